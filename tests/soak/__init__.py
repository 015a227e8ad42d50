"""Soak: a real `greenroom serve` under churn, and proof that nothing leaks."""
