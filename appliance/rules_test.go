package appliance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgplane/pgplane/topology"
)

// The topology file and the admin API refuse the same changes with the same
// rules and words: a VNet, subnet or zone a server uses is not deleted, a
// locked zone is not deleted, a ReadOnly zone keeps its links.
//
// SPEC: A2 T10 D10
func TestFileAndAPIRefuseAlike(t *testing.T) {
	const zone = "contoso.private.postgres.database.azure.com"
	for _, tc := range []struct {
		name    string
		lock    string
		edit    func(string) string
		changes map[string]json.RawMessage
		want    string
	}{
		{"subnet in use", "none",
			func(s string) string {
				return strings.Replace(s, "      - {name: db, cidr: 127.0.1.0/28, delegation: Microsoft.DBforPostgreSQL/flexibleServers}\n", "", 1)
			},
			map[string]json.RawMessage{topology.SubnetKey("app-vnet", "db"): nil},
			`T10: subnet "db" in vnet "app-vnet": server "orders-db" uses it; delete the server first`},
		{"zone locked CanNotDelete", "CanNotDelete",
			func(s string) string {
				return strings.Replace(s, "  - name: "+zone+"\n    links: [app-vnet, custom-vnet]\n    lock: CanNotDelete\n", "", 1)
			},
			map[string]json.RawMessage{topology.ZoneKey(zone): nil, topology.LinkKey(zone, "app-vnet"): nil, topology.LinkKey(zone, "custom-vnet"): nil},
			`lock: private DNS zone "` + zone + `": lock: the zone is locked CanNotDelete and cannot be deleted`},
		{"link to a ReadOnly zone", "ReadOnly",
			func(s string) string {
				return strings.Replace(s, "links: [app-vnet, custom-vnet]", "links: [app-vnet, custom-vnet, hub-vnet]", 1)
			},
			map[string]json.RawMessage{topology.LinkKey(zone, "hub-vnet"): topology.Present},
			`lock: private DNS zone "` + zone + `": links: the zone is locked ReadOnly and its links cannot be changed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := topologyFileIn(t, func(s string) string { return strings.Replace(s, "lock: none", "lock: "+tc.lock, 1) })
			a := startTestAppliance(t, path, func(o *Options) { o.State.Dir = filepath.Join(dir, "state") })
			defer a.Stop()
			before := a.Snapshot()

			apiErr := a.Change(tc.changes)
			data, _ := os.ReadFile(path)
			edited := tc.edit(string(data))
			if edited == string(data) {
				t.Fatal("the edit changed nothing")
			}
			os.WriteFile(path, []byte(edited), 0o644)
			fileErr := a.Reload()

			var apiVs, fileVs topology.Violations
			if !errors.As(apiErr, &apiVs) || !errors.As(fileErr, &fileVs) {
				t.Fatalf("both must be refused by a rule:\nAPI:  %v\nfile: %v", apiErr, fileErr)
			}
			if !strings.HasPrefix(apiVs[0].Error(), tc.want) {
				t.Errorf("the API's refusal:\n%v\nwant it to start with %s", apiVs, tc.want)
			}
			if said(apiVs) != said(fileVs) {
				t.Errorf("the file and the API differ:\nAPI:\n%s\nfile:\n%s", said(apiVs), said(fileVs))
			}
			if a.Snapshot() != before {
				t.Error("a refused change must leave the snapshot in force")
			}
		})
	}
}

// said is what violations say, without where they were found.
func said(vs topology.Violations) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "%s: %s: %s: %s\n", v.Rule, v.Object, v.Field, v.Message)
	}
	return b.String()
}
