"""Django's `{# … #}` comment ends on its own line: one spread over two lines is printed on the
page as it stands (the operator's node page once showed one). Longer comments use
{% comment %}. A scan of every template the portal ships."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [ROOT / "templates", *ROOT.glob("apps/*/templates"), *ROOT.glob("portal/*/templates")]


def test_every_short_comment_closes_on_its_own_line():
    open_comments = [
        f"{path.relative_to(ROOT)}:{number}"
        for directory in TEMPLATE_DIRS
        for path in directory.rglob("*.html")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.count("{#") > line.count("#}")
    ]
    assert TEMPLATE_DIRS and open_comments == []
