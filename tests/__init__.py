"""The test suite: unit (no engine), contract (the Dagger schema), e2e (the real engine and registry).

A package, so that pytest puts the repository root on sys.path: `ci` and the shared helpers in
`tests.support` import by their full names.
"""
