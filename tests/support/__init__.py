"""What several test modules share: fakes for the code around real parts, real documents,
store backends, deployment files, and harnesses built from the real parts. A test module
imports from here (or gets a fixture from a conftest.py), never from another test module."""
