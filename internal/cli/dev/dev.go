// Package dev is `sluice dev`: tools for trying Sluice on one machine.
// `sluice dev cluster` runs a local multi-node cluster as real `sluice
// serve` processes, the same binary and flags a production node uses.
package dev

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-io/sluice/internal/freeport"
	"github.com/spf13/cobra"
)

// Limits.
const (
	// maxNodes bounds --nodes: a local cluster is for trying things, and
	// Raft quorums beyond 5 voters only slow writes.
	maxNodes = 9
	// stopTimeout is how long a node may take to shut down cleanly after
	// SIGTERM (controlled shutdown moves its leaderships first) before it
	// is killed.
	stopTimeout = 60 * time.Second
	// layoutFile, in --dir, remembers each node's ports so that a
	// restarted dev cluster comes back at the same addresses.
	layoutFile = "cluster.json"
	// maxLogLine bounds one line of a node's log that is relayed.
	maxLogLine = 1 << 20
)

// Command returns `sluice dev`.
func Command() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Try Sluice on one machine: a local cluster of real processes",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(clusterCommand())
	return cmd
}

// ClusterOptions are the flags of `sluice dev cluster`.
type ClusterOptions struct {
	Nodes int
	// Controllers, if not 0, adds that many dedicated controllers
	// (process.roles=controller, the quorum's voters) and makes the Nodes
	// broker-only (process.roles=broker), Kafka's production layout.
	Controllers int
	Dir         string
	Host        string
	Configs     []string
	Binary      string // the sluice binary to run; default this one
	LogLevel    string
}

func clusterCommand() *cobra.Command {
	o := ClusterOptions{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a local cluster of N `sluice serve` processes until Ctrl-C",
		Long: `Run a local cluster: N sluice serve processes on this machine, each a broker and
a voter of the metadata quorum, with data in --dir/node-N. Each node's Kafka, controller
and HTTP addresses are printed, with the bootstrap list for clients; the nodes' logs are
relayed with a [node N] prefix. Ctrl-C stops every node cleanly (SIGTERM: each moves its
partition leaderships away first). Run it again with the same --dir to restart the same
cluster at the same addresses.

With --controllers C, C dedicated controllers (process.roles=controller, ids 1 to C, the
quorum's voters, no client listener) run beside the N brokers (process.roles=broker, ids
C+1 on), Kafka's production layout: a broker that dies is never the active controller.

Every node is started the way a real deployment starts one, e.g. for node 1 of 3:
  sluice serve --node-id 1 --listen 127.0.0.1:P1 --controller-listen 127.0.0.1:C1 \
    --controller-quorum-voters 1@127.0.0.1:C1,2@127.0.0.1:C2,3@127.0.0.1:C3 \
    --http-listen 127.0.0.1:H1 --data-dir DIR/node-1`,
		Example: `  sluice dev cluster
  sluice dev cluster --nodes 5 --dir /tmp/sluice5
  sluice dev cluster --controllers 3 --nodes 3 --dir /tmp/sluice-dedicated
  sluice dev cluster -c default.replication.factor=3 -c min.insync.replicas=2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunCluster(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.Nodes, "nodes", "n", 3, "number of nodes (1-9); each is a broker and a controller voter, unless --controllers")
	f.IntVar(&o.Controllers, "controllers", 0, "dedicated controllers (process.roles=controller, 1-9) to add; the --nodes are then brokers only (process.roles=broker)")
	f.StringVar(&o.Dir, "dir", "./sluice-dev-cluster", "directory for the nodes' data (node-1, node-2, ...) and the port layout")
	f.StringVar(&o.Host, "host", "127.0.0.1", "address every node listens on")
	f.StringArrayVarP(&o.Configs, "config", "c", nil, "broker config key=value passed to every node, repeatable")
	f.StringVar(&o.LogLevel, "log-level", "info", "the nodes' log level: debug, info, warn or error")
	return cmd
}

// Node is one node's addresses, as printed and as kept in cluster.json.
type Node struct {
	ID int32 `json:"id"`
	// Role is process.roles: "broker", "controller", or "" for both.
	Role       string `json:"role,omitempty"`
	Kafka      string `json:"kafka"`
	Controller string `json:"controller"`
	HTTP       string `json:"http"`
	DataDir    string `json:"dataDir"`
	// Registry is where the node serves the schema registry: the first
	// node with a Kafka listener only ("" for the others, and in layouts
	// written before the registry).
	Registry string `json:"registry,omitempty"`
}

// Layout is cluster.json.
type Layout struct {
	Nodes []Node `json:"nodes"`
}

// Voters is the --controller-quorum-voters value of the layout.
func (l Layout) Voters() string {
	var parts []string
	for _, n := range l.Nodes {
		if n.Role != roleBroker {
			parts = append(parts, fmt.Sprintf("%d@%s", n.ID, n.Controller))
		}
	}
	return strings.Join(parts, ",")
}

// Bootstrap is the client bootstrap list.
func (l Layout) Bootstrap() string {
	var parts []string
	for _, n := range l.Nodes {
		if n.Role != roleController {
			parts = append(parts, n.Kafka)
		}
	}
	return strings.Join(parts, ",")
}

// Node roles (process.roles) of a layout with dedicated controllers.
const (
	roleBroker     = "broker"
	roleController = "controller"
)

// args are node n's `sluice serve` arguments in layout l.
func (l Layout) args(n Node, logLevel string) []string {
	args := []string{"serve", "--node-id", strconv.Itoa(int(n.ID)), "--controller-quorum-voters", l.Voters(),
		"--http-listen", n.HTTP, "--data-dir", n.DataDir, "--log-level", logLevel, "--schema-registry-listen", n.Registry}
	switch n.Role {
	case roleBroker:
		args = append(args, "--listen", n.Kafka, "-c", "process.roles=broker")
	case roleController:
		args = append(args, "--controller-listen", n.Controller, "-c", "process.roles=controller")
	default:
		args = append(args, "--listen", n.Kafka, "--controller-listen", n.Controller)
	}
	return args
}

// RunCluster runs the cluster until ctx ends or every node has exited.
func RunCluster(ctx context.Context, o ClusterOptions, stdout, stderr io.Writer) error {
	if o.Nodes < 1 || o.Nodes > maxNodes {
		return fmt.Errorf("--nodes %d: want 1 to %d", o.Nodes, maxNodes)
	}
	if o.Controllers < 0 || o.Controllers > maxNodes {
		return fmt.Errorf("--controllers %d: want 0 (every node both) or 1 to %d", o.Controllers, maxNodes)
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("--dir %q: %w", o.Dir, err)
	}
	layout, err := loadOrPlan(dir, o.Nodes, o.Controllers, o.Host)
	if err != nil {
		return err
	}
	bin := o.Binary
	if bin == "" {
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find the sluice binary: %w", err)
		}
	}
	fmt.Fprintf(stdout, "Starting %d nodes (data in %s):\n", len(layout.Nodes), dir)
	for _, n := range layout.Nodes {
		switch n.Role {
		case roleController:
			fmt.Fprintf(stdout, "  node %d  controller only         controller %-21s http %-21s data %s\n", n.ID, n.Controller, n.HTTP, n.DataDir)
		case roleBroker:
			fmt.Fprintf(stdout, "  node %d  kafka %-21s broker only                     http %-21s data %s\n", n.ID, n.Kafka, n.HTTP, n.DataDir)
		default:
			fmt.Fprintf(stdout, "  node %d  kafka %-21s controller %-21s http %-21s data %s\n", n.ID, n.Kafka, n.Controller, n.HTTP, n.DataDir)
		}
	}
	fmt.Fprintf(stdout, "Bootstrap: %s\n  export SLUICE_BROKERS=%s\n  sluice cluster info\n", layout.Bootstrap(), layout.Bootstrap())
	for _, n := range layout.Nodes {
		if n.Registry != "" {
			fmt.Fprintf(stdout, "Schema registry (node %d): http://%s\n  export SLUICE_SCHEMA_REGISTRY=http://%s\n", n.ID, n.Registry, n.Registry)
		}
	}
	fmt.Fprintf(stdout, "Ctrl-C stops every node.\n\n")

	var (
		out   sync.Mutex // one line at a time on stdout
		wg    sync.WaitGroup
		procs []*proc
	)
	exited := make(chan error, len(layout.Nodes))
	for _, n := range layout.Nodes {
		args := layout.args(n, o.LogLevel)
		for _, c := range o.Configs {
			args = append(args, "-c", c)
		}
		cmd := exec.Command(bin, args...)
		// Its own process group: Ctrl-C reaches only us, and we stop the
		// nodes in order (SIGTERM, wait) instead of all dying at once.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			stopAll(procs)
			return err
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			stopAll(procs)
			return fmt.Errorf("start node %d: %w", n.ID, err)
		}
		pr := &proc{cmd: cmd, done: make(chan struct{})}
		procs = append(procs, pr)
		prefix := fmt.Sprintf("[node %d] ", n.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			relay(pipe, stdout, &out, prefix)
			err := cmd.Wait()
			close(pr.done)
			out.Lock()
			if err != nil {
				fmt.Fprintf(stderr, "%snode %d exited: %v\n", prefix, n.ID, err)
			} else {
				fmt.Fprintf(stdout, "%snode %d stopped\n", prefix, n.ID)
			}
			out.Unlock()
			exited <- err
		}()
	}
	left := len(procs)
	var firstErr error
	for left > 0 {
		select {
		case <-ctx.Done():
			fmt.Fprintln(stdout, "\nStopping every node (SIGTERM)...")
			stopAll(procs)
			wg.Wait()
			return nil
		case err := <-exited:
			left--
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("every node has exited; the first failure: %w (see its log above)", firstErr)
	}
	return nil
}

// relay copies r to w line by line, each line prefixed.
func relay(r io.Reader, w io.Writer, mu *sync.Mutex, prefix string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%s%s\n", prefix, sc.Bytes())
		mu.Unlock()
	}
	io.Copy(io.Discard, r) // a line over maxLogLine: drain so the node never blocks on its log
}

// proc is a started node.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait has returned
}

// stopAll sends SIGTERM to every node still running and kills those that
// have not stopped after stopTimeout. Only the processes we started, by
// their PIDs.
func stopAll(procs []*proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-p.done:
				return
			default:
			}
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				p.cmd.Process.Kill()
				<-p.done
			}
		}()
	}
	wg.Wait()
}

// loadOrPlan reads dir's cluster.json, or picks free ports for n nodes and
// writes one. A layout with another node count is refused: the metadata
// quorum's voters cannot change that way.
func loadOrPlan(dir string, n, controllers int, host string) (Layout, error) {
	name := filepath.Join(dir, layoutFile)
	var l Layout
	b, err := os.ReadFile(name)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &l); err != nil {
			return l, fmt.Errorf("%s: %w (delete %s to start a new cluster)", name, err, dir)
		}
		ctl := 0
		for _, nd := range l.Nodes {
			if nd.Role == roleController {
				ctl++
			}
		}
		if len(l.Nodes)-ctl != n || ctl != controllers {
			return l, fmt.Errorf("%s holds a cluster of %d nodes and %d dedicated controllers; run with --nodes %d --controllers %d, or use another --dir for a new cluster",
				dir, len(l.Nodes)-ctl, ctl, len(l.Nodes)-ctl, ctl)
		}
		return l, nil
	case !errors.Is(err, os.ErrNotExist):
		return l, err
	}
	for i := 1; i <= n+controllers; i++ {
		var addrs [3]string
		for j := range addrs {
			a, err := freeport.Addr(host)
			if err != nil {
				return l, err
			}
			addrs[j] = a
		}
		nd := Node{ID: int32(i), Kafka: addrs[0], Controller: addrs[1], HTTP: addrs[2],
			DataDir: filepath.Join(dir, fmt.Sprintf("node-%d", i))}
		// Dedicated controllers take the first ids, brokers the rest.
		switch {
		case controllers > 0 && i <= controllers:
			nd.Role, nd.Kafka = roleController, ""
		case controllers > 0:
			nd.Role, nd.Controller = roleBroker, ""
		}
		l.Nodes = append(l.Nodes, nd)
	}
	for i := range l.Nodes {
		if l.Nodes[i].Kafka != "" {
			a, err := freeport.Addr(host)
			if err != nil {
				return l, err
			}
			l.Nodes[i].Registry = a
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return l, fmt.Errorf("create %s: %w", dir, err)
	}
	b, _ = json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return l, fmt.Errorf("write %s: %w", name, err)
	}
	return l, nil
}
