// Package examples holds the Go code of the README and docs/ as whole programs, one
// directory each, that the tests build and run: the docs show each file
// whole, or a fragment of it, and names the file under the block. Its test
// reads the Go blocks of README.md and docs/*.md and checks each against the file it names.
package examples
