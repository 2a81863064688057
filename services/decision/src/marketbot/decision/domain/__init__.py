"""Pure logic: the decision policy, eligibility rules, the plan table."""
