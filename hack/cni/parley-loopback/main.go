//go:build linux

// Command parley-loopback is the CNI plugin of hack/cluster.sh's single-node test cluster.
//
// Each pod gets its own network namespace (made by the container runtime) holding only its
// loopback interface, which this plugin brings up and gives an address of its own from a
// loopback subnet (127.1.0.0/16 by default). There is no link to the host: a pod can talk to
// itself and nothing else, which is all the test machines allow. Pods that need the network
// use hostNetwork.
//
// The address is reported to the runtime under CNI_IFNAME (containerd asks for "eth0" and
// looks the pod IP up under that name) although it lives on lo: there is no other interface.
//
// Allocations are kept in a JSON file in dataDir, under a file lock, so that DEL frees exactly
// what ADD took even across runtime restarts, and concurrent sandboxes never share an address.
//
// Network configuration (one plugin of a conflist):
//
//	{"type": "parley-loopback", "subnet": "127.1.0.0/16", "dataDir": "/var/lib/parley-loopback"}
//
// It implements the CNI commands ADD, DEL, CHECK and VERSION (spec versions 0.3.0 to 1.0.0)
// with the standard library only, on Linux.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
)

// supportedVersions are the CNI spec versions whose results this plugin can write; they differ
// only in the "version" field of an IP, dropped in 1.0.0.
var supportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"}

const (
	defaultSubnet  = "127.1.0.0/16"
	defaultDataDir = "/var/lib/cni/parley-loopback"
)

// netConf is the plugin's network configuration, read from stdin.
type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Subnet     string `json:"subnet"`
	DataDir    string `json:"dataDir"`
}

// cniError is the error object of the CNI spec, written to stdout with a non-zero exit.
type cniError struct {
	CNIVersion string `json:"cniVersion"`
	Code       int    `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

func (e *cniError) Error() string { return e.Msg }

// Error codes of the CNI spec, and one of this plugin's own (100 and up are plugin-defined).
const (
	errIncompatibleVersion = 1
	errInvalidEnv          = 4
	errIO                  = 5
	errDecode              = 6
	errInvalidConfig       = 7
	errExhausted           = 100
)

func newError(code int, msg string, err error) *cniError {
	e := &cniError{Code: code, Msg: msg}
	if err != nil {
		e.Details = err.Error()
	}
	return e
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		var e *cniError
		if !errors.As(err, &e) {
			e = newError(errIO, err.Error(), nil)
		}
		if e.CNIVersion == "" {
			e.CNIVersion = supportedVersions[len(supportedVersions)-1]
		}
		_ = json.NewEncoder(os.Stdout).Encode(e)
		os.Exit(1)
	}
}

func run(stdin io.Reader, stdout io.Writer) error {
	cmd := os.Getenv("CNI_COMMAND")
	if cmd == "VERSION" {
		return json.NewEncoder(stdout).Encode(map[string]any{
			"cniVersion":        supportedVersions[len(supportedVersions)-1],
			"supportedVersions": supportedVersions,
		})
	}

	conf, subnet, err := readConf(stdin)
	if err != nil {
		return err
	}
	containerID, ifName, netns := os.Getenv("CNI_CONTAINERID"), os.Getenv("CNI_IFNAME"), os.Getenv("CNI_NETNS")
	if containerID == "" || ifName == "" {
		return newError(errInvalidEnv, "CNI_CONTAINERID and CNI_IFNAME are required", nil)
	}
	key := containerID + "/" + ifName
	store := &store{dir: conf.DataDir, subnet: subnet}

	switch cmd {
	case "ADD":
		if netns == "" {
			return newError(errInvalidEnv, "CNI_NETNS is required for ADD", nil)
		}
		addr, err := store.allocate(key)
		if err != nil {
			return err
		}
		if err := inNetns(netns, func() error { return setupLoopback(addr) }); err != nil {
			// Give the address back now rather than count on the runtime calling DEL after a
			// failed ADD.
			_ = store.release(key)
			return newError(errIO, "configuring lo in "+netns, err)
		}
		return writeResult(stdout, conf.CNIVersion, ifName, netns, addr)
	case "DEL":
		// The runtime deletes the namespace, and the address with it; only the allocation
		// needs undoing. DEL must succeed when there is nothing to undo.
		return store.release(key)
	case "CHECK":
		addr, ok, err := store.lookup(key)
		if err != nil {
			return err
		}
		if !ok {
			return newError(errInvalidConfig, "no address allocated to "+key, nil)
		}
		if netns == "" {
			return newError(errInvalidEnv, "CNI_NETNS is required for CHECK", nil)
		}
		return inNetns(netns, func() error { return checkLoopback(addr) })
	default:
		return newError(errInvalidEnv, fmt.Sprintf("unknown CNI_COMMAND %q", cmd), nil)
	}
}

// readConf decodes and validates the network configuration, filling in defaults.
func readConf(r io.Reader) (*netConf, netip.Prefix, error) {
	var conf netConf
	if err := json.NewDecoder(r).Decode(&conf); err != nil {
		return nil, netip.Prefix{}, newError(errDecode, "decoding the network configuration", err)
	}
	if !slices.Contains(supportedVersions, conf.CNIVersion) {
		return nil, netip.Prefix{}, newError(errIncompatibleVersion,
			fmt.Sprintf("cniVersion %q is not one of %v", conf.CNIVersion, supportedVersions), nil)
	}
	if conf.Subnet == "" {
		conf.Subnet = defaultSubnet
	}
	if conf.DataDir == "" {
		conf.DataDir = defaultDataDir
	}
	subnet, err := netip.ParsePrefix(conf.Subnet)
	if err != nil {
		return nil, netip.Prefix{}, newError(errInvalidConfig, "subnet", err)
	}
	// Anything else would put a routable address on lo, or leave no room for pods.
	if !subnet.Addr().Is4() || !subnet.Addr().IsLoopback() || subnet.Bits() > 30 {
		return nil, netip.Prefix{}, newError(errInvalidConfig,
			fmt.Sprintf("subnet %s must be an IPv4 loopback prefix of /30 or wider", subnet), nil)
	}
	return &conf, subnet.Masked(), nil
}

// writeResult prints the ADD result in the configuration's spec version.
func writeResult(w io.Writer, version, ifName, netns string, addr netip.Addr) error {
	type iface struct {
		Name    string `json:"name"`
		Sandbox string `json:"sandbox"`
	}
	type ipConfig struct {
		Version   string `json:"version,omitempty"` // before 1.0.0 only
		Address   string `json:"address"`
		Interface int    `json:"interface"`
	}
	ip := ipConfig{Address: netip.PrefixFrom(addr, 32).String(), Interface: 0}
	if version != "1.0.0" {
		ip.Version = "4"
	}
	return json.NewEncoder(w).Encode(map[string]any{
		"cniVersion": version,
		"interfaces": []iface{{Name: ifName, Sandbox: netns}},
		"ips":        []ipConfig{ip},
	})
}
