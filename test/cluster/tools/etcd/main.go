// Command etcd is a thin wrapper around etcdmain so that the test cluster can
// build a pinned etcd server from the Go module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
