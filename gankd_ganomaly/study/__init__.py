"""Studies of the paper's claims: training budgets (``budgets``), the resumable sweep (``sweep``), the report
(``report``) and the demo (``demo``). Their commands (reproduce, report, prepare-cifar10) are in
:mod:`gankd_ganomaly.cli.study`: the command line depends on the studies, never the reverse."""
