package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// PodNetworkCIDR is the range pods, nodes and their backends get addresses
// from. Inside the test network namespace every address of it is local
// (bindable and reachable over loopback); outside it none of them is used.
const PodNetworkCIDR = "10.244.0.0/16"

// netnsEnv marks the re-executed process that runs inside the namespace.
const netnsEnv = "SLUICE_TEST_NETNS"

// RunInNetNS runs run inside a private network namespace and returns its exit
// code; call it first thing in TestMain or main:
//
//	func TestMain(m *testing.M) { os.Exit(cluster.RunInNetNS(m.Run)) }
//
// The calling process re-executes its own binary with the same arguments in
// a new network namespace (a user namespace too when not root), forwards
// signals to it, and returns its exit code. In that child, loopback is
// brought up and PodNetworkCIDR routed to it as local, so every address of
// the range can be bound. Everything the tests start (etcd, kube-apiserver,
// kube-controller-manager, backends, clients, sluice itself) lives in that
// namespace and cannot reach or be reached from any other network. If the
// namespace cannot be set up, RunInNetNS prints what is missing and returns
// 1: the suite fails, it never skips.
//
// Before re-executing, RunInNetNS also finds the cluster's binaries with
// BinDir, building them if needed, because the Go module proxy is out of
// reach inside the namespace; the child gets their directory in
// $SLUICE_TEST_BIN_DIR.
func RunInNetNS(run func() int) int {
	if os.Getenv(netnsEnv) == "1" {
		// Processes started from inside must not mistake themselves for
		// the namespace's first process.
		os.Unsetenv(netnsEnv)
		if err := setUpNetNS(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: cannot set up the test network namespace: %v\n", err)
			return 1
		}
		return run()
	}
	code, err := reexecInNetNS()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	return code
}

// reexecInNetNS runs this binary again in a new network namespace and
// returns its exit code.
func reexecInNetNS() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("test network namespace: find own executable: %w", err)
	}
	// If whatever started us (go test, go run, make) dies, take the
	// namespace down too: SIGTERM is forwarded to the child below.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return 0, fmt.Errorf("test network namespace: prctl(PR_SET_PDEATHSIG): %w", errno)
	}
	// The child's temporary files (cluster directories, t.TempDir) go to a
	// directory removed when it exits, however it exits.
	tmp, err := os.MkdirTemp("", "sluice-netns-")
	if err != nil {
		return 0, fmt.Errorf("test network namespace: %w", err)
	}
	defer func() {
		if os.Getenv(KeepDirEnv) != "" {
			fmt.Fprintf(os.Stderr, "%s set: keeping %s\n", KeepDirEnv, tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	// Build (or find) the cluster's binaries here: inside the namespace the
	// Go module proxy is out of reach.
	env := append(os.Environ(), netnsEnv+"=1", "TMPDIR="+tmp)
	if os.Getenv(BinDirEnv) == "" {
		dir, err := BinDir(context.Background())
		if err != nil {
			return 0, err
		}
		env = append(env, BinDirEnv+"="+dir)
	}
	attempts := []uintptr{syscall.CLONE_NEWNET, syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET}
	if os.Geteuid() != 0 {
		attempts = attempts[1:]
	}
	var cmd *exec.Cmd
	var errs []error
	for _, flags := range attempts {
		cmd = exec.Command(exe, os.Args[1:]...)
		cmd.Args[0] = os.Args[0]
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}
		if flags&syscall.CLONE_NEWUSER != 0 {
			cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
			cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
			cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		}
		err = cmd.Start()
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("clone(%s): %w", cloneFlagNames(flags), err))
	}
	if err != nil {
		return 0, fmt.Errorf("cannot create the test network namespace (%w). "+
			"The end-to-end tests run in a private network namespace so that pod addresses (%s) exist nowhere else. "+
			"As root this needs CAP_SYS_ADMIN (a privileged container); as another user it needs unprivileged user "+
			"namespaces (sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 where that exists, "+
			"kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04+)", errors.Join(errs...), PodNetworkCIDR)
	}

	// A closed stdout (go test … | head) must not kill us before cleanup;
	// the child gets the broken pipe.
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "process in the test network namespace killed by %v\n", ws.Signal())
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	default:
		return 0, fmt.Errorf("test network namespace: wait for child: %w", err)
	}
}

func cloneFlagNames(flags uintptr) string {
	if flags&syscall.CLONE_NEWUSER != 0 {
		return "CLONE_NEWUSER|CLONE_NEWNET"
	}
	return "CLONE_NEWNET"
}

// checkPodNetwork reports whether addresses of PodNetworkCIDR can be bound,
// which is true only inside the namespace RunInNetNS sets up.
func checkPodNetwork() error {
	l, err := net.Listen("tcp", "10.244.255.254:0")
	if err != nil {
		return fmt.Errorf("pod network %s is not local here (%w): the test cluster must run inside the "+
			"network namespace that cluster.RunInNetNS creates (call it from TestMain or main)", PodNetworkCIDR, err)
	}
	return l.Close()
}

// NSEnterCommand is the command prefix that runs a program in this process's
// network namespace from outside it, e.g. `nsenter --net=/proc/42/ns/net`.
func NSEnterCommand() string {
	pid := os.Getpid()
	self, err1 := os.Readlink("/proc/self/ns/user")
	parent, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", os.Getppid()))
	if err1 == nil && err2 == nil && self != parent {
		return fmt.Sprintf("nsenter --preserve-credentials --user --net --target %d", pid)
	}
	return fmt.Sprintf("nsenter --net=/proc/%d/ns/net", pid)
}
