use opsledger_tests as _;
