// Package importboundary holds the test that keeps the project's packages in their lanes:
// who may import whom is written down once, in boundaries_test.go, and `go test` fails when
// a forbidden import appears. docs/development.md explains the layout the rules keep.
package importboundary
