"""The statistics a study is decided and reported with: intervals and paired comparisons, the race's
group-sequential test, and checks of the paired differences. numpy and scipy only."""
