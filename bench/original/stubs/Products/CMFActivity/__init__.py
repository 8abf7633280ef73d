# Stand-in package: see ../../README.
