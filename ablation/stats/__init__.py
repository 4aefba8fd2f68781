"""The statistics a study is decided and reported with: intervals and paired comparisons, the race's
group-sequential test, checks of the paired differences, and the effects model of factorial designs.
numpy and scipy, and statsmodels for the effects model."""
