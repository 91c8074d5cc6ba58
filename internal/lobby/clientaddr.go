package lobby

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ParseTrustedProxies parses a comma-separated list of addresses and
// CIDR prefixes (e.g. "127.0.0.1, 10.0.0.0/8, ::1") for
// [Options.TrustedProxies]. An empty list trusts nobody.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR prefix", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// clients tells who sent a request: its client's address and whether the
// client reached the site over TLS. The TCP peer is the client, unless
// the peer is a trusted proxy: then the proxy's Forwarded header (or,
// without one, X-Forwarded-For and X-Forwarded-Proto) says who it
// forwards for. From any other peer those headers are ignored, since
// anyone can send them.
type clients struct {
	trusted []netip.Prefix
}

// client is the sender of a request.
type client struct {
	addr   netip.Addr // invalid if the peer's address could not be read
	secure bool       // the client reached the site over TLS
}

// key is what the per-address limits count by: the IPv4 address, or the
// /64 prefix of an IPv6 address (one host usually holds a whole /64).
func (c client) key() string {
	if !c.addr.IsValid() {
		return "unknown"
	}
	if c.addr.Is6() {
		if p, err := c.addr.WithZone("").Prefix(64); err == nil {
			return p.String()
		}
	}
	return c.addr.String()
}

func (cs clients) trusts(a netip.Addr) bool {
	for _, p := range cs.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// of returns the sender of r.
func (cs clients) of(r *http.Request) client {
	c := client{secure: r.TLS != nil}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return c
	}
	c.addr = ap.Addr().Unmap()
	if !cs.trusts(c.addr) {
		return c
	}
	hops, proto := forwarded(r.Header)
	// The nearest hop that is not a trusted proxy is the client; the hops
	// before it are what the client itself claimed.
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break // an obfuscated or broken hop: the last trusted one stands
		}
		c.addr = a
		if !cs.trusts(a) {
			break
		}
	}
	if proto != "" {
		c.secure = strings.EqualFold(proto, "https")
	}
	return c
}

// forwarded returns the hops a proxy recorded, nearest last, and the
// protocol the nearest proxy was reached with: from Forwarded (RFC 7239)
// if present, else from X-Forwarded-For and X-Forwarded-Proto.
func forwarded(h http.Header) (hops []string, proto string) {
	if fw := h.Values("Forwarded"); len(fw) > 0 {
		for _, elem := range strings.Split(strings.Join(fw, ","), ",") {
			var hop string
			for _, pair := range strings.Split(elem, ";") {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				v = strings.Trim(strings.TrimSpace(v), `"`)
				switch strings.ToLower(k) {
				case "for":
					hop = v
				case "proto":
					proto = v // the nearest element's wins
				}
			}
			hops = append(hops, hop)
		}
		return hops, proto
	}
	for _, v := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(v, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	if p := h.Values("X-Forwarded-Proto"); len(p) > 0 {
		last := p[len(p)-1]
		proto = strings.TrimSpace(last[strings.LastIndexByte(last, ',')+1:])
	}
	return hops, proto
}

// parseHop parses one hop's address: "192.0.2.1", "192.0.2.1:4711",
// "[2001:db8::1]" or "[2001:db8::1]:4711", "2001:db8::1".
func parseHop(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}
