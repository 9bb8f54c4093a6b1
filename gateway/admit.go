package gateway

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pgplane/pgplane/pgwire"
	"github.com/pgplane/pgplane/topology"
)

// Routing and admission: which server a startup packet names, and whether
// its policy admits the client (G3–G6).

// route finds the server: by the TLS server name, else by user@NAME (G3).
func (s *session) route(snap *topology.Snapshot, p *startupPacket) (*topology.ServerInfo, error) {
	user := p.get("user")
	name, suffix := "", ""
	if at := strings.LastIndexByte(user, '@'); at >= 0 {
		name, suffix = user[:at], user[at+1:]
	}
	if s.sni != "" {
		if si := snap.ServerForHost(s.sni); si != nil {
			if suffix == si.Server.Name {
				p.set("user", name) // the user is passed on without @NAME
				s.user = name
			}
			return si, nil
		}
	}
	if suffix != "" {
		if si := snap.Server(strings.ToLower(suffix)); si != nil {
			p.set("user", name)
			s.user = name
			return si, nil
		}
		return nil, refuse(decisionNoServer, &pgwire.Error{Code: pgwire.CodeRejectedConnection, Message: fmt.Sprintf("server %q does not exist", suffix),
			Hint: "check the server name after the @ in the user name"})
	}
	if s.tlsVer == 0 {
		return nil, refuse(decisionNoServer, &pgwire.Error{Code: pgwire.CodeRejectedConnection, Message: "the gateway cannot tell which server you want: this connection is not encrypted, so it carries no TLS server name",
			Detail: "libpq's default sslmode=prefer tries again without TLS after any error; if an error of the TLS attempt came before this one, that error is the one to act on",
			Hint:   "connect over TLS to NAME.postgres.database.azure.com (sslmode=require or stronger), or put the server in the user name: user=USER@NAME"})
	}
	if s.sni != "" {
		return nil, refuse(decisionNoServer, &pgwire.Error{Code: pgwire.CodeRejectedConnection, Message: fmt.Sprintf("no server is named by the TLS server name %q", s.sni),
			Hint: "connect to NAME.postgres.database.azure.com, or put the server in the user name: user=USER@NAME"})
	}
	return nil, refuse(decisionNoServer, &pgwire.Error{Code: pgwire.CodeRejectedConnection, Message: "the gateway cannot tell which server you want",
		Hint: "connect to NAME.postgres.database.azure.com over TLS (host=NAME.postgres.database.azure.com), or put the server in the user name: user=USER@NAME"})
}

// admit applies the server's policy to the client: its firewall rules or
// private access (G5, G6), then require_secure_transport and the TLS
// version bounds (G4).
func (s *session) admit(snap *topology.Snapshot, si *topology.ServerInfo) error {
	if d := snap.Admit(si, s.client); d != topology.Allowed {
		return refuse(d, admissionError(snap, si, s.client, d))
	}
	return s.checkTLS(si)
}

// admissionError explains a refused admission, with a hint to fix it (G5, G6).
func admissionError(snap *topology.Snapshot, si *topology.ServerInfo, client netip.Addr, decision string) *pgwire.Error {
	name := si.Server.Name
	if decision == topology.DeniedPrivate {
		return &pgwire.Error{Code: pgwire.CodeInvalidAuthorization,
			Message: fmt.Sprintf("server %q accepts connections only from its virtual network and directly peered networks; client address %s is outside them", name, client),
			Detail:  "address spaces admitted: " + snap.AddressSpaceHint(si),
			Hint:    "connect from a VM in the server's VNet or a directly peered VNet (peering is not transitive)"}
	}
	return &pgwire.Error{Code: pgwire.CodeInvalidAuthorization,
		Message: fmt.Sprintf("no firewall rule of server %q admits client address %s", name, client),
		Hint: fmt.Sprintf("add a rule: pgplanectl firewall-rule create --server %s --name allow-%s --start-ip-address %s --end-ip-address %s",
			name, strings.ReplaceAll(client.String(), ".", "-"), client, client)}
}

// checkTLS applies require_secure_transport and the TLS version bounds (G4).
func (s *session) checkTLS(si *topology.ServerInfo) error {
	if s.tlsVer == 0 {
		if si.TLS.RequireSecureTransport {
			return refuse(decisionTLSRequired, &pgwire.Error{Code: pgwire.CodeInvalidAuthorization,
				Message: fmt.Sprintf("server %q requires TLS (require_secure_transport is on); this connection is not encrypted", si.Server.Name),
				Hint:    "connect with sslmode=require or stronger, e.g. sslmode=verify-full sslrootcert=CA-FILE"})
		}
		return nil
	}
	lo, hi := tlsVersion(si.TLS.MinVersion), tlsVersion(si.TLS.MaxVersion)
	if s.tlsVer < lo || (hi != 0 && s.tlsVer > hi) {
		return refuse(decisionTLSVersion, &pgwire.Error{Code: pgwire.CodeInvalidAuthorization,
			Message: fmt.Sprintf("%s is outside the TLS versions server %q allows (%s to %s)", tls.VersionName(s.tlsVer), si.Server.Name, si.TLS.MinVersion, orAny(si.TLS.MaxVersion)),
			Hint:    "use a client that supports the allowed versions, or change ssl_min_protocol_version / ssl_max_protocol_version"})
	}
	return nil
}

func orAny(v string) string {
	if v == "" {
		return "the newest"
	}
	return v
}
