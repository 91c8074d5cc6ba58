// Package examples holds the Go code of the README as whole programs, one
// directory each, that the tests build and run: the README shows each file
// whole, or a fragment of it, and names the file under the block. Its test
// reads the README's Go blocks and checks each against the file it names.
package examples
