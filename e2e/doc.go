// Package e2e holds kiln's end-to-end test and the apply/destroy
// benchmarks: the kiln binary, built by the test, run as a user runs it
// (the embedded default, no KILN_ADDR, real drivers) against a private
// libvirtd in a network namespace the test makes, with real guests booted
// from the test image (make test-image).
package e2e
