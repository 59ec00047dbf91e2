"""What the tests share: stacks of running services and workers, tokens, factories. No tests here."""
