"""Calls as conversions for the ad platforms.

`metrica`: the Yandex Metrica offline-calls CSV; `ga4`: Google Analytics 4
Measurement Protocol events, written to a file or sent; `commands`: the
`pbx-tracker export` commands; `settings`: the ``exports:`` config section.
"""
