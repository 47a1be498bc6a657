"""Chargeback reads. report: grouped rows, totals and the daily series; idle: idle holders;
params: query-string parameters → ChargebackQuery; exports: CSV."""
