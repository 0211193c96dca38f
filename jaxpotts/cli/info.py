"""`jaxpotts info`: versions, devices and precision."""

from __future__ import annotations

import json

from ._common import (
    add_common,
)


def run(args) -> dict:
    import platform

    import equinox
    import jax
    import numpy
    import optax

    from .. import __version__

    info = {
        "jaxpotts": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "numpy": numpy.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
    }
    if args.json:
        print(json.dumps(info))
    elif not args.quiet:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k.ljust(width)}  {v}")
    return info


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="versions, devices and precision",
        description="Print versions of jaxpotts and its dependencies, JAX devices and x64.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_common(p, ".")
    p.set_defaults(func=run)
