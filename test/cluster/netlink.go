package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// setUpNetNS brings loopback up and makes PodNetworkCIDR local to it, as
// `ip link set lo up; ip route add local 10.244.0.0/16 dev lo` would.
func setUpNetNS() error {
	_, podNet, err := net.ParseCIDR(PodNetworkCIDR)
	if err != nil {
		return err
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("find loopback: %w", err)
	}
	nl, err := dialNetlink()
	if err != nil {
		return err
	}
	defer nl.close()

	link := make([]byte, syscall.SizeofIfInfomsg)
	link[0] = syscall.AF_UNSPEC
	binary.NativeEndian.PutUint32(link[4:], uint32(lo.Index))
	binary.NativeEndian.PutUint32(link[8:], syscall.IFF_UP)  // flags
	binary.NativeEndian.PutUint32(link[12:], syscall.IFF_UP) // change mask
	if err := nl.request(syscall.RTM_NEWLINK, 0, link); err != nil {
		return fmt.Errorf("bring loopback up: %w", err)
	}

	ones, _ := podNet.Mask.Size()
	route := []byte{
		syscall.AF_INET, byte(ones), 0, 0, // family, dst_len, src_len, tos
		syscall.RT_TABLE_LOCAL, syscall.RTPROT_BOOT, syscall.RT_SCOPE_HOST, syscall.RTN_LOCAL,
		0, 0, 0, 0, // flags
	}
	route = appendRtAttr(route, syscall.RTA_DST, podNet.IP.To4())
	oif := binary.NativeEndian.AppendUint32(nil, uint32(lo.Index))
	route = appendRtAttr(route, syscall.RTA_OIF, oif)
	err = nl.request(syscall.RTM_NEWROUTE, syscall.NLM_F_CREATE|syscall.NLM_F_EXCL, route)
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("route %s to loopback: %w", PodNetworkCIDR, err)
	}
	return checkPodNetwork()
}

// netlinkConn is a NETLINK_ROUTE socket, enough to send a few requests that
// expect an acknowledgement.
type netlinkConn struct {
	fd  int
	seq uint32
}

func dialNetlink() (*netlinkConn, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	return &netlinkConn{fd: fd}, nil
}

func (c *netlinkConn) close() { syscall.Close(c.fd) }

// request sends one message of type typ and waits for its acknowledgement.
func (c *netlinkConn) request(typ uint16, flags uint16, payload []byte) error {
	c.seq++
	msg := make([]byte, syscall.NLMSG_HDRLEN, syscall.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(msg[0:], uint32(syscall.NLMSG_HDRLEN+len(payload)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|syscall.NLM_F_REQUEST|syscall.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, payload...)
	if err := syscall.Sendto(c.fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != syscall.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return syscall.Errno(errno)
			}
			return nil
		}
	}
}

// appendRtAttr appends a route attribute, padded to 4 bytes.
func appendRtAttr(b []byte, typ uint16, data []byte) []byte {
	l := syscall.SizeofRtAttr + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
