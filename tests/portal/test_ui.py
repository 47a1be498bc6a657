"""The UI toolkit (portal/ui): the one money formatter, state tones, tables and the chart,
badge and progress partials."""

from decimal import Decimal

import django_tables2 as tables
import pytest
from django.http import QueryDict
from django.template import Context, Template

from portal.ui.badges import state_tone
from portal.ui.charts import Series, chart_spec
from portal.ui.money import money_format
from portal.ui.tables import MoneyColumn, PortalTable, StateColumn, table_configure


@pytest.mark.parametrize("amount,currency,expected", [
    (Decimal("2.490000"), "USD", "$2.49"),
    (Decimal("19.92"), "USD", "$19.92"),
    (Decimal("20"), "USD", "$20.00"),
    (Decimal("0.434"), "USD", "$0.43"),
    (Decimal("0.435"), "USD", "$0.44"),  # half-up, as invoices round
    (Decimal("-0.43"), "USD", "\u2212$0.43"),  # a true minus sign, before the symbol
    (Decimal("0.000150"), "USD", "$0.00015"),  # below a cent: never reads as free
    (Decimal("0.00041666"), "USD", "$0.00042"),
    (Decimal("1234.5"), "EUR", "€1,234.50"),
    (Decimal("3.1"), "CHF", "3.10 CHF"),
    (Decimal("1500"), "JPY", "¥1,500"),
    (Decimal("0"), "USD", "$0.00"),
])
def test_money_is_rounded_to_the_minor_unit(amount, currency, expected):
    assert money_format(amount, currency) == expected


@pytest.mark.parametrize("amount,expected", [
    (Decimal("2.4875"), "$2.4875"),
    (Decimal("2.490000"), "$2.49"),
    (Decimal("20"), "$20.00"),
    (Decimal("0.000150"), "$0.00015"),
])
def test_a_price_keeps_every_digit_that_matters(amount, expected):
    assert money_format(amount, "USD", exact=True) == expected


def test_the_template_filters_use_the_one_formatter():
    rendered = Template('{% load ui %}{{ a|money:"USD" }} {{ b|price:"USD" }} {{ none|money:"USD" }}|').render(
        Context({"a": Decimal("-1.005"), "b": Decimal("2.4875"), "none": None})
    )
    assert rendered == "\u2212$1.01 $2.4875 |"


@pytest.mark.parametrize("state,tone", [
    ("running", "ok"), ("ready", "ok"), ("paid", "ok"), ("queued", "wait"), ("provisioning", "wait"),
    ("failed", "err"), ("down", "err"), ("stopped", "muted"), ("open", "warn"), ("something-new", "info"),
])
def test_every_state_has_one_tone(state, tone):
    assert state_tone(state) == tone


def test_a_waiting_state_badge_spins_and_a_final_one_does_not():
    template = Template("{% load ui %}{% state_badge state label %}")
    waiting = template.render(Context({"state": "provisioning", "label": "Starting"}))
    running = template.render(Context({"state": "running", "label": "Running"}))
    assert 'class="badge tone-wait"' in waiting and "spinner" in waiting and "Starting" in waiting
    assert 'class="badge tone-ok"' in running and "spinner" not in running


def test_progress_is_clamped_and_unknown_length_is_indeterminate():
    template = Template("{% load ui %}{% progress value total %}")
    assert 'aria-valuenow="100"' in template.render(Context({"value": 12, "total": 10}))
    assert 'aria-valuenow="25"' in template.render(Context({"value": 1, "total": 4}))
    assert "progress-indeterminate" in template.render(Context({"value": None, "total": None}))


class _Row(dict):
    def __getattr__(self, name):
        return self[name]


class _CostTable(PortalTable):
    name = tables.Column()
    state = StateColumn(label="state_label")
    cost = MoneyColumn()


def _rows(n):
    return [_Row(name=f"nb-{i:02d}", state="running", state_label="Running", cost=Decimal(i) / 3, currency="USD")
            for i in range(n)]


def test_a_table_sorts_pages_and_keeps_the_query_in_its_links():
    # Given 30 rows and a viewer on page 2, sorted by name descending, with a filter in the query
    table = table_configure(_CostTable(_rows(30)), params=QueryDict("sort=-name&page=2&state=running"), per_page=10)
    html = Template("{% load ui %}{% table t %}").render(Context({"t": table}))
    # Then page 2 of the descending order is shown, amounts through the money formatter
    assert "nb-19" in html and "nb-10" in html and "nb-29" not in html and "nb-09" not in html
    assert "$6.33" in html  # 19 / 3
    assert "Page 2 of 3 · 30 in all" in html
    # And every link keeps the filter; the sort links go back to page 1
    assert 'href="?sort=-name&amp;page=3&amp;state=running"' in html
    assert 'href="?sort=name&amp;state=running"' in html
    assert "tone-ok" in html


def test_a_page_past_the_end_shows_the_last_page():
    table = table_configure(_CostTable(_rows(12)), params={"page": "99"}, per_page=10)
    assert table.page.number == 2


def test_an_empty_table_says_so():
    html = Template("{% load ui %}{% table t %}").render(Context({"t": table_configure(_CostTable([]), params={})}))
    assert "Nothing here yet." in html


def test_a_chart_carries_its_data_as_json_and_an_empty_one_says_no_data():
    spec = chart_spec(kind="line", labels=["10:00", "10:01"], series=[Series("GPU 0", [Decimal("12.5"), None])],
                      unit="%", y_max=100)
    html = Template('{% load ui %}{% chart "util" spec caption="GPU utilisation" %}').render(Context({"spec": spec}))
    assert 'data-chart="chart-data-util"' in html
    assert '<script id="chart-data-util" type="application/json">' in html
    assert '"values": [12.5, null]' in html and '"yMax": 100' in html
    empty = chart_spec(kind="bar", labels=[], series=[Series("Spend", [])], unit="$")
    assert "No data yet." in Template('{% load ui %}{% chart "spend" spec %}').render(Context({"spec": empty}))
