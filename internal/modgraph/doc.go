// Package modgraph holds a test of what the library costs its users in
// modules: a new module that imports only github.com/sqspool/sqspool and
// holds the README quickstart must stay small (see modgraph_test.go).
package modgraph
