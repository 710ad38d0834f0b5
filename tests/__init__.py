"""bootlab's tests: a package, so that benches and tests alike import the helpers as
`tests.support.*` from the repository root."""
