"""`ablate report`: the report model read back from MLflow (`model`, with the race's part in `race` and a
factorial study's effects model in `effects`), and what draws it: `tables` (the tables every renderer
shows), `files` (Markdown, HTML, CSV and LaTeX, with `paper`'s tables and `figures`' plots),
`effects_words` and `effects_plot` (the effects in sentences and as a half-normal plot), and `make`,
which writes them and logs them to the study."""
