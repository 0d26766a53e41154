// Package modgraph holds tests of the repo's module layout: what the library
// costs its users in modules (a new module that imports only
// github.com/sqspool/sqspool and holds the README quickstart must stay
// small), and that the README's go run commands work from the root of a
// clone, where the examples are a module of their own joined by go.work.
package modgraph
