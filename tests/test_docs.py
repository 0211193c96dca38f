"""The documentation stays true: the API reference matches the docstrings, local links resolve."""

import importlib.util
import re
from pathlib import Path

import pytest
from _scripts import load_script

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _generator():
    return load_script("generate_api", DOCS / "generate_api.py")


def test_api_reference_is_up_to_date():
    expected = _generator().render()
    actual = (DOCS / "api.md").read_text()
    assert actual == expected, "docs/api.md is out of date with the docstrings: run python docs/generate_api.py"


def test_api_reference_documents_every_public_name():
    gen = _generator()
    text = (DOCS / "api.md").read_text()
    for module_name, _ in gen.MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            assert f"`{module_name}.{name}" in text, f"{module_name}.{name} is missing from docs/api.md"


@pytest.mark.parametrize("page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in DOCS.glob("*.md"))])
def test_local_links_resolve(page):
    path = REPO / page
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"


def test_cli_page_documents_every_option():
    import argparse

    from jaxpotts import cli

    text = (DOCS / "cli.md").read_text()
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, subparser in sub.choices.items():
        assert f"## `jaxpotts {name}" in text, f"docs/cli.md has no section for jaxpotts {name}"
        for action in subparser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}" in text, f"docs/cli.md does not document jaxpotts {name} {option}"


def test_cli_page_holds_the_current_defaults_table():
    from jaxpotts import defaults

    text = (DOCS / "cli.md").read_text()
    start = text.index("<!-- defaults table")
    table = text[text.index("\n", start) + 1 : text.index("\n<!-- end of defaults table -->")]
    assert table == defaults.markdown(), "docs/cli.md's defaults table is stale: paste jaxpotts.defaults.markdown()"
