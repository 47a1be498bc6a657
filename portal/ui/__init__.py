"""The portal's UI toolkit: one money formatter, tables, charts, badges, progress and empty
states that every app's pages share. It sits with portal's other base modules, below every app,
and imports none of them."""
