"""The marketers' page: ``GET /reports`` and ``GET /reports.csv`` (marketers and admins).

For a period (``from``/``to`` dates, ``to`` included; default: the last 30
days in the reports' zone) the page shows the sources report (calls, leads =
first-time callers, target calls, missed rate, and with ad spend its cost and
cost per lead) and two charts made on the server (`pbx_tracker.web.pages.charts`):
calls per source per day, and cost per lead per source per day (a gap on days
without leads).  When only one day of the period has calls, the first chart
shows that day's calls by hour, and the second the day's figures in a sentence.
The total's cost per call, target call and lead divide the spend by the calls
of the sources with spend only (`pbx_tracker.reports.compute`; the page says
so under the table).  The numbers
are those of ``pbx-tracker report sources`` (`pbx_tracker.reports.compute`),
the CSV that of ``--format csv``.  A manager gets 403; a bad date 400 (logged).
On a phone the table turns into a card per source with every figure labelled
(``data-label``, shown by pages.css), so nothing scrolls sideways.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import structlog
from aiohttp import web

from pbx_tracker.reports.compute import Report, ReportError, ReportKind, ReportRow, compute
from pbx_tracker.reports.dialect import label_text
from pbx_tracker.reports.dimensions import Dimension, ReportScope
from pbx_tracker.reports.period import Period, days_period, local_date, zone_name
from pbx_tracker.reports.render import as_csv
from pbx_tracker.web.pages.charts import COLOURS, Series, Slot, legend, line_chart, stacked_bars
from pbx_tracker.web.pages.common import HEADERS, PAGES, Pages, html_response, with_role
from pbx_tracker.web.pages.filters import MAX_DAYS, MAX_LOGGED, FilterError, parse_day
from pbx_tracker.web.pages.layout import escape as _e
from pbx_tracker.web.pages.layout import layout, plural
from pbx_tracker.web.roles import REPORT_ROLES

__all__ = ["add_reports_routes", "parse_period"]

log = structlog.get_logger(__name__)

DEFAULT_DAYS = 30
NO_SOURCE = "(no source)"
OTHER = "other"


def parse_period(query: Mapping[str, str], today: date) -> tuple[date, date]:
    """The days of ``from``/``to``; FilterError for a bad or too long period."""
    last = parse_day(query, "to", today)
    first = parse_day(query, "from", last - timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise FilterError("to", "The period ends before it starts.")
    if (last - first).days >= MAX_DAYS:
        raise FilterError("to", f"Pick a period of at most {MAX_DAYS} days.")
    return first, last


def _period(pages: Pages, first: date, last: date) -> Period:
    return days_period(first, last, pages.rules.zone)


async def _reports(pages: Pages, first: date, last: date) -> tuple[Report, Report]:
    """The sources report, and the same grouped by source and day (for the charts)."""
    async with pages.engine.connect() as conn:
        scope = ReportScope.of(conn.dialect.name, pages.rules, _period(pages, first, last))
        sources = await compute(conn, ReportKind.SOURCES, scope)
        daily = await compute(conn, ReportKind.SOURCES, scope, [Dimension.SOURCE, Dimension.DAY])
    return sources, daily


async def _hourly(pages: Pages, first: date, last: date) -> Report:
    """The sources report grouped by source and hour (for a period with one day of calls)."""
    async with pages.engine.connect() as conn:
        scope = ReportScope.of(conn.dialect.name, pages.rules, _period(pages, first, last))
        return await compute(conn, ReportKind.SOURCES, scope, [Dimension.SOURCE, Dimension.HOUR])


def _days_with_calls(daily: Report) -> set[date]:
    return {_day(row) for row in daily.rows if row.figures["calls"]}


def _day(row: ReportRow) -> date:
    return date.fromisoformat(str(label_text(row.key[1]))[:10])


async def _allowed(request: web.Request) -> tuple[Any, Any] | web.Response:
    return await with_role(request, REPORT_ROLES, "Reports are for marketers.")


def _asked_period(request: web.Request, user: Any) -> tuple[date, date] | FilterError:
    today = local_date(request.app[PAGES].now(), request.app[PAGES].rules.zone)
    try:
        return parse_period(request.query, today)
    except FilterError as error:
        value = request.query.get(error.field, "")
        log.warning(
            "web.filter_refused", user=user.name, field=error.field, value=value[:MAX_LOGGED]
        )
        return error


async def reports_page(request: web.Request) -> web.Response:
    allowed = await _allowed(request)
    if isinstance(allowed, web.Response):
        return allowed
    session, user = allowed
    pages = request.app[PAGES]
    asked = _asked_period(request, user)
    if isinstance(asked, FilterError):
        today = local_date(pages.now(), pages.rules.zone)
        default = today - timedelta(days=DEFAULT_DAYS - 1)
        page = reports_html(
            user, session.csrf, default, today, error=f"{asked} Nothing was computed."
        )
        return html_response(page, 400)
    first, last = asked
    try:
        sources, daily = await _reports(pages, first, last)
        one_day = len(_days_with_calls(daily)) == 1
        hourly = await _hourly(pages, first, last) if one_day else None
    except ReportError as error:
        return html_response(reports_html(user, session.csrf, first, last, error=str(error)), 409)
    page = reports_html(
        user,
        session.csrf,
        first,
        last,
        sources=sources,
        daily=daily,
        hourly=hourly,
        zone=pages.rules.zone,
    )
    return html_response(page)


async def reports_csv(request: web.Request) -> web.Response:
    allowed = await _allowed(request)
    if isinstance(allowed, web.Response):
        return allowed
    _, user = allowed
    asked = _asked_period(request, user)
    if isinstance(asked, FilterError):
        return web.Response(text=f"{asked}\n", status=400, headers=HEADERS)
    first, last = asked
    try:
        sources, _ = await _reports(request.app[PAGES], first, last)
    except ReportError as error:
        return web.Response(text=f"{error}\n", status=409, headers=HEADERS)
    log.info("web.report_csv", user=user.name, start=str(first), end=str(last))
    name = f"sources-{first}-{last}.csv"
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    return web.Response(
        text=as_csv(sources) + "\n", content_type="text/csv", charset="utf-8", headers=headers
    )


def add_reports_routes(app: web.Application) -> None:
    app.router.add_get("/reports", reports_page)
    app.router.add_get("/reports.csv", reports_csv)


# --- HTML ---------------------------------------------------------------------------------


def _money(value: Decimal | float | None) -> str:
    return "—" if value is None else f"{value:,.2f}".replace(",", "\u202f")


def _axis_money(value: float) -> str:
    """Money on an axis, short: 2.5, 150, 1 500, 25k, 1.25M (the points' tooltips have
    the cents)."""
    if value >= 1_000_000:
        return _decimals(value / 1_000_000) + "M"
    if value >= 10_000:
        return _decimals(value / 1_000) + "k"
    if value >= 10:
        return f"{value:,.0f}".replace(",", "\u202f")
    return _decimals(value)


def _decimals(value: float) -> str:
    """At most two decimals, without trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _source(value: str | None) -> str:
    return NO_SOURCE if value is None else value


def _paid_leads(report: Report) -> int:
    """The leads of the sources with ad spend: what the total's cost per lead divides by."""
    return sum(row.figures["first_time_callers"] for row in report.rows if row.figures["cost"])


def _table(report: Report) -> str:
    with_cost = report.with_cost and any(
        row.figures["cost"] is not None for row in [*report.rows, report.total] if row
    )
    money = f" ({_e(report.currency)})" if report.currency else ""
    heads = ["Calls", "Leads", "Target", "Missed"]
    heads += [f"Cost{money}", "Per lead"] if with_cost else []
    head = "".join(f'<th scope="col" class="num">{h}</th>' for h in heads)
    # on a phone each row is a card and each figure shows its column's name (pages.css)
    labels = [f' data-label="{h}"' for h in heads]

    def cells(figures: Mapping[str, Any]) -> str:
        values = [
            str(figures["calls"]),
            str(figures["first_time_callers"]),
            str(figures["target_calls"]),
            _rate(figures["missed_rate"]),
        ]
        if with_cost:
            values += [_money(figures["cost"]), _money(figures["cost_per_lead"])]
        return "".join(
            f'<td class="num"{label}>{_e(v)}</td>' for label, v in zip(labels, values, strict=True)
        )

    body = "".join(
        f'<tr><th scope="row">{_e(_source(row.key[0]))}</th>{cells(row.figures)}</tr>'
        for row in report.rows
    )
    foot = note = ""
    if report.total is not None:
        foot = f'<tfoot><tr><th scope="row">Total</th>{cells(report.total.figures)}</tr></tfoot>'
        if with_cost and _paid_leads(report):
            leads = plural(_paid_leads(report), "lead")
            note = (
                '<p class="muted note" id="per-lead-note">The total\'s per lead is the spend '
                f"divided by the {leads} of the sources with spend (per call and per target "
                "call likewise); leads of sources without spend are left out.</p>"
            )
    return (
        '<div class="table-wrap"><table class="report" id="sources-report"><thead><tr>'
        f'<th scope="col">Source</th>{head}</tr></thead><tbody>{body}</tbody>{foot}'
        f"</table></div>{note}"
    )


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _calls_series(order: list[str]) -> dict[str, Series]:
    """A series per source, the busiest first; past the colours, the rest as "other"."""
    shown = order if len(order) <= COLOURS else order[: COLOURS - 1]
    return {name: Series(name) for name in shown}


def _colour(calls: dict[str, Series], name: str) -> int:
    """A source's colour in every chart: its place among the calls chart's series."""
    return list(calls).index(name if name in calls else OTHER)


def _add_calls(calls: dict[str, Series], name: str, slot: Slot, count: int) -> None:
    series = calls.setdefault(name if name in calls else OTHER, Series(OTHER))
    series.values[slot] = series.values.get(slot, 0) + count


def _one_day_charts(sources: Report, hourly: Report, day: date, costs: list[Series]) -> str:
    """The only day with calls: its calls by hour, and its cost per lead in words."""
    calls = _calls_series([_source(row.key[0]) for row in sources.rows])
    for row in hourly.rows:
        hour = int(str(label_text(row.key[1]))[11:13])
        _add_calls(calls, _source(row.key[0]), hour, row.figures["calls"])
    when = f"{day:%a} {day.day} {day:%b}"
    bars = stacked_bars(list(range(24)), list(calls.values()), title=f"Calls by hour, {when}")
    parts = [
        '<section class="card chart" id="calls-chart"><h2>Calls by hour</h2>'
        f'<p class="muted chart-note">Only {_e(when)} has calls in this period, so the chart '
        f'shows its hours.</p><div class="chart-scroll">{bars}</div>{legend(list(calls))}'
        "</section>"
    ]
    money = f" {sources.currency}" if sources.currency else ""
    figures = "; ".join(
        f"{_e(one.name)}: {_money(Decimal(str(one.values[day])))}{_e(money)}" for one in costs
    )
    text = (
        f"Cost per lead on {_e(when)}: {figures}."
        if figures
        else "No lead of a source with ad spend this day."
    )
    parts.append(
        '<section class="card chart chart-empty" id="cost-chart"><h2>Cost per lead</h2>'
        f'<p class="muted" id="cost-day">{text}</p></section>'
    )
    return '<div class="charts">' + "".join(parts) + "</div>"


def _charts(
    sources: Report, daily: Report, first: date, last: date, hourly: Report | None = None
) -> str:
    """Calls per source per day (the busiest sources, the rest as "other"), and the
    cost per lead of the sources with ad spend; one day of calls: by hour."""
    order = [_source(row.key[0]) for row in sources.rows]
    calls = _calls_series(order)
    costs: dict[str, Series] = {}
    for row in daily.rows:
        name, day = _source(row.key[0]), _day(row)
        _add_calls(calls, name, day, row.figures["calls"])
        per_lead = row.figures["cost_per_lead"]
        if per_lead is not None:
            line = costs.setdefault(name, Series(name, colour=_colour(calls, name)))
            line.values[day] = float(per_lead)
    ordered = sorted(costs.values(), key=lambda s: order.index(s.name))
    only = _days_with_calls(daily)
    if hourly is not None and len(only) == 1:
        return _one_day_charts(sources, hourly, next(iter(only)), ordered)
    days: list[Slot] = list(_days(first, last))
    bars = stacked_bars(days, list(calls.values()), title="Calls per source per day")
    parts = [
        '<section class="card chart" id="calls-chart"><h2>Calls per day</h2>'
        f'<div class="chart-scroll">{bars}</div>{legend(list(calls))}</section>'
    ]
    if costs:
        money = f" ({sources.currency})" if sources.currency else ""
        chart = line_chart(days, ordered, title="Cost per lead per source", label=_axis_money)
        parts.append(
            f'<section class="card chart" id="cost-chart"><h2>Cost per lead{_e(money)}</h2>'
            f'<div class="chart-scroll">{chart}</div>'
            f"{legend([s.name for s in ordered], [_colour(calls, s.name) for s in ordered])}"
            "</section>"
        )
    else:
        parts.append(
            '<section class="card chart chart-empty" id="cost-chart"><h2>Cost per lead</h2>'
            '<p class="muted">No ad spend in this period. Import it with '
            "<code>pbx-tracker spend import FILE.csv</code> to see what a lead costs.</p>"
            "</section>"
        )
    return '<div class="charts">' + "".join(parts) + "</div>"


def reports_html(
    user: Any,
    csrf: str,
    first: date,
    last: date,
    *,
    sources: Report | None = None,
    daily: Report | None = None,
    hourly: Report | None = None,
    zone: Any = None,
    error: str | None = None,
) -> str:
    period = f"from={first.isoformat()}&amp;to={last.isoformat()}"
    form = (
        '<form class="filters filters-short card" method="get" action="/reports">'
        f'<label>From<input type="date" name="from" value="{first}"></label>'
        f'<label>To<input type="date" name="to" value="{last}"></label>'
        '<div class="filter-actions"><button class="btn btn-brand" type="submit">Show</button>'
        f'<a class="btn btn-quiet" id="csv" href="/reports.csv?{period}" download>'
        "Download CSV</a></div></form>"
    )
    alert = f'<p class="alert alert-error" role="alert">{_e(error)}</p>' if error else ""
    content = ""
    if sources is not None and daily is not None:
        days = (last - first).days + 1
        note = (
            f'<p class="summary">{first:%d %b %Y} &ndash; {last:%d %b %Y}, {plural(days, "day")} '
            f"({_e(zone_name(zone))}) · target call ≥ {sources.scope.rules.target_seconds} s"
            " · a lead is a first-time caller</p>"
        )
        if sources.rows:
            content = note + _table(sources) + _charts(sources, daily, first, last, hourly)
        else:
            content = note + '<p class="empty" id="empty">No calls in this period.</p>'
    body = f'<div class="heading"><h1>Reports</h1></div>{form}{alert}{content}'
    return layout("Reports", body, user=user, csrf=csrf, wide=True)
