package topology

import (
	"fmt"
	"net/url"
	"time"
)

// Server parameters of an HA server's failover (C6). They are parameters,
// not fields, so that the admin API and `pgplanectl parameter set` change
// them with the same checks as the topology file (A2).
const (
	// ParamPromote is "never" (the default: an external HA manager promotes,
	// and the name follows whoever does) or "auto" (pgplane promotes the
	// standby once a quorum has seen the primary down for the grace).
	ParamPromote = "pgplane.promote"
	// ParamPromoteGrace is how long a quorum must see the primary down
	// before pgplane promotes the standby, as a duration ("5s").
	ParamPromoteGrace = "pgplane.promote_grace"
	// ParamPatroniPrimary and ParamPatroniStandby are the Patroni REST
	// endpoints (http://host:8008) of the two backends; with them a backend's
	// role comes from `GET /primary` rather than from pg_is_in_recovery().
	ParamPatroniPrimary = "pgplane.patroni_primary"
	ParamPatroniStandby = "pgplane.patroni_standby"
)

// Values of ParamPromote.
const (
	PromoteNever = "never"
	PromoteAuto  = "auto"
)

// DefaultPromoteGrace rides out a blip of a few seconds (a restart of the
// primary's network link, a freeze under memory pressure) before pgplane
// promotes; measured by bench-failover.
const DefaultPromoteGrace = 3 * time.Second

// Bounds of ParamPromoteGrace.
const (
	minPromoteGrace = time.Second
	maxPromoteGrace = 10 * time.Minute
)

// FailoverPolicy is how an HA server fails over (C6).
type FailoverPolicy struct {
	// Promote: pgplane promotes the standby itself (pgplane.promote auto).
	Promote bool
	// Grace is how long a quorum must see the primary down before that.
	Grace time.Duration
	// Patroni are the Patroni endpoints of the primary (0) and standby (1)
	// backends; empty when roles come from SQL.
	Patroni [2]string
}

// newFailoverPolicy reads the failover parameters; they are validated.
func newFailoverPolicy(params map[string]string) FailoverPolicy {
	p := FailoverPolicy{Promote: params[ParamPromote] == PromoteAuto, Grace: DefaultPromoteGrace,
		Patroni: [2]string{params[ParamPatroniPrimary], params[ParamPatroniStandby]}}
	if d, err := time.ParseDuration(params[ParamPromoteGrace]); err == nil {
		p.Grace = d
	}
	return p
}

// failoverParameterProblem checks one failover parameter's value; ok is
// false when name is not one of them.
func failoverParameterProblem(name, value string) (problem string, ok bool) {
	switch name {
	case ParamPromote:
		if value != PromoteNever && value != PromoteAuto {
			return fmt.Sprintf("%q is not %s or %s", value, PromoteNever, PromoteAuto), true
		}
	case ParamPromoteGrace:
		d, err := time.ParseDuration(value)
		if err != nil || d < minPromoteGrace || d > maxPromoteGrace {
			return fmt.Sprintf("%q is not a duration from %s to %s (such as 5s)", value, minPromoteGrace, maxPromoteGrace), true
		}
	case ParamPatroniPrimary, ParamPatroniStandby:
		u, err := url.Parse(value)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Sprintf("%q is not a Patroni REST endpoint such as http://10.0.0.5:8008", value), true
		}
	default:
		return "", false
	}
	return "", true
}

// failoverParameters checks what the failover parameters say together and
// about the server: they belong to HA servers, both backends or neither
// name a Patroni endpoint, and Patroni promotes its own standbys.
func (v *validator) failoverParameters(path, obj string, s *Server) {
	var set []string
	for _, k := range []string{ParamPromote, ParamPromoteGrace, ParamPatroniPrimary, ParamPatroniStandby} {
		if _, ok := s.Parameters[k]; ok {
			set = append(set, k)
		}
	}
	if len(set) == 0 {
		return
	}
	if !s.HighAvailability {
		v.fail("C6", path+".parameters."+set[0], obj, "parameters."+set[0], "%s applies to high-availability servers only", set[0])
		return
	}
	p, s1 := s.Parameters[ParamPatroniPrimary], s.Parameters[ParamPatroniStandby]
	if (p == "") != (s1 == "") {
		v.fail("C6", path+".parameters", obj, "parameters", "%s and %s go together: name the Patroni endpoint of both backends", ParamPatroniPrimary, ParamPatroniStandby)
	}
	if p != "" && s.Parameters[ParamPromote] == PromoteAuto {
		v.fail("C6", path+".parameters."+ParamPromote, obj, "parameters."+ParamPromote, "%s auto with Patroni endpoints: Patroni promotes its own standbys, so leave %s at never", ParamPromote, ParamPromote)
	}
}
