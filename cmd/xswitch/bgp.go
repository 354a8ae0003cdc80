package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"xswitch/evpn"
)

// evpnSwitch is a controlled switch with an EVPN speaker.
type evpnSwitch interface {
	EVPNStatus(ctx context.Context) (evpn.Status, bool)
}

// bgpStatus answers `ctl bgp`.
func bgpStatus(sw controlled) (any, string) {
	es, ok := sw.(evpnSwitch)
	if !ok {
		return nil, "this switch has no EVPN speaker"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, ok := es.EVPNStatus(ctx)
	if !ok {
		return nil, "no evpn: section in the configuration; see docs/fabric.md"
	}
	return st, ""
}

// formatBGP prints `ctl bgp` for people.
func formatBGP(w io.Writer, s *evpn.Status) {
	fmt.Fprintf(w, "BGP EVPN: router id %s, AS %d, VTEP %s, up %s, flood unknown unicast %v\n",
		s.RouterID, s.ASN, s.VTEP, s.Uptime, s.FloodUnknownUnicast)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NEIGHBOR\tAS\tSTATE\tUP\tRECEIVED\tACCEPTED\tADVERTISED\tFLAPS\tLAST ERROR")
	for _, n := range s.Neighbors {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", n.Address, n.ASN, n.State, n.Uptime, n.Received, n.Accepted, n.Advertised, n.Flaps, n.LastError)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VNI\tRD\tRT\tFLOOD VTEPS\tREMOTE MACS\tLOCAL MACS\tRX T2/T3\tTX T2/T3")
	for _, v := range s.VNIs {
		var fl []string
		for _, a := range v.FloodVTEPs {
			fl = append(fl, a.String())
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d/%d\t%d/%d\n", v.VNI, v.RD, strings.Join(v.ExportRTs, ","), strings.Join(fl, ","),
			v.RemoteMACs, v.LocalMACs, v.ReceivedType2, v.ReceivedType3, v.AdvertisedType2, v.AdvertisedType3)
	}
	tw.Flush()
	c := s.Counters
	fmt.Fprintf(w, "routes: %d updates, %d withdraws, %d duplicates, %d withdraws of unknown routes; MAC moves in %d, out %d; errors: dataplane %d, announce %d\n",
		c.Updates, c.Withdraws, c.Duplicates, c.WithdrawUnknown, c.MACMovesIn, c.MACMovesOut, c.DataplaneErrors, c.AnnounceErrors)
	if len(c.Ignored) > 0 {
		fmt.Fprintf(w, "ignored: %s\n", drops(c.Ignored))
	}
}
