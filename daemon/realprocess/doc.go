// Package realprocess holds the tests that run kiln as users do: the kiln
// binary, built by the test, started as separate server and agent
// processes on loopback, killed with SIGKILL and restarted.
package realprocess
