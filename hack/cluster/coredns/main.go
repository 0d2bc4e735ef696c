// Command coredns is CoreDNS v1.15.0 with only the plugins the local cluster's Corefile uses. The stock binary
// links every plugin (cloud DNS providers, etcd, ...) and takes several times longer to build cold.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// Same relative order as upstream's plugin.cfg: the order here is the order of the plugin chain.
	dnsserver.Directives = []string{"bind", "ready", "errors", "kubernetes"}
}

func main() {
	coremain.Run()
}
