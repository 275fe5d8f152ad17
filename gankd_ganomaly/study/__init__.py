"""Studies of the paper's claims: training budgets (``budgets``), the resumable sweep (``sweep``), the report
(``report``), the demo (``demo``) and their command line (``cli``: reproduce, report, prepare-cifar10)."""
