package transcript

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// Conversation is the activities of one logical connection, in the order they happened.
type Conversation struct {
	Connector, Run, ID string
	Steps              []*v1alpha1.ActivityRecord
}

// Start is when the first recorded activity of the conversation happened.
func (c *Conversation) Start() time.Time { return c.Steps[0].Time.Time }

// Peer is the peer's address when the conversation began.
func (c *Conversation) Peer() string { return c.Steps[0].Connection.Peer }

// count counts the steps of type typ, or the alerts when typ is empty.
func (c *Conversation) count(typ v1alpha1.ActivityType) int {
	n := 0
	for _, s := range c.Steps {
		if (typ == "" && s.Alert) || (typ != "" && s.Type == typ) {
			n++
		}
	}
	return n
}

// Conversations groups entries into conversations, by connector, run and connection id,
// ordered by their start. Activities of no conversation (a connector starting, a refused
// peer) are left out.
func Conversations(entries []Entry) []*Conversation {
	type key struct{ connector, run, id string }
	byKey := map[key]*Conversation{}
	var out []*Conversation
	for _, e := range entries {
		r := e.Record
		if r.Connection == nil || r.Connection.ID == "" {
			continue
		}
		k := key{r.Connector, e.Run, r.Connection.ID}
		c := byKey[k]
		if c == nil {
			c = &Conversation{Connector: k.connector, Run: k.run, ID: k.id}
			byKey[k] = c
			out = append(out, c)
		}
		c.Steps = append(c.Steps, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start().Before(out[j].Start()) })
	return out
}

// Choice names the conversation to print; empty fields do not narrow it.
type Choice struct {
	Connector, Run, ID string
}

// ChoiceError says why no single conversation was chosen, with the candidates to list.
type ChoiceError struct {
	Reason     string
	Candidates []*Conversation
	Hint       string
}

func (e *ChoiceError) Error() string {
	if e.Hint == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Hint
}

// Pick chooses one conversation. With no id, the only conversation there is; with an id,
// the one conversation of that id (connector and run narrow the search, as they do without
// an id). Otherwise a *ChoiceError lists the candidates and how to choose among them.
func Pick(convs []*Conversation, ch Choice) (*Conversation, error) {
	if ch.Connector != "" && !slices.ContainsFunc(convs, func(c *Conversation) bool { return c.Connector == ch.Connector }) {
		return nil, &ChoiceError{Reason: fmt.Sprintf("no conversation of connector %q", ch.Connector),
			Candidates: convs, Hint: connectorHint(convs)}
	}
	var cands []*Conversation
	for _, c := range convs {
		if (ch.Connector == "" || c.Connector == ch.Connector) && (ch.Run == "" || c.Run == ch.Run) &&
			(ch.ID == "" || c.ID == ch.ID) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 1 {
		return cands[0], nil
	}
	switch {
	case len(cands) == 0 && len(convs) == 0:
		return nil, &ChoiceError{Reason: "no conversation recorded"}
	case len(cands) == 0:
		return nil, &ChoiceError{Reason: "no conversation " + describe(ch), Candidates: convs, Hint: "name one of those listed"}
	case ch.ID == "":
		return nil, &ChoiceError{Reason: strings.TrimSpace(fmt.Sprintf("%d conversations %s", len(cands), describe(ch))), Candidates: cands,
			Hint: "name one, as in: parley transcript " + example(cands)}
	}
	e := &ChoiceError{Reason: fmt.Sprintf("%s names %d conversations", describe(ch), len(cands)), Candidates: cands}
	var hints []string
	if connectors := names(cands, func(c *Conversation) string { return c.Connector }); len(connectors) > 1 {
		hints = append(hints, "--connector "+strings.Join(connectors, " or "))
	}
	if severalRuns(cands) {
		runs := slices.DeleteFunc(names(cands, func(c *Conversation) string { return c.Run }), func(r string) bool { return r == "" })
		hints = append(hints, "--run "+strings.Join(runs, " or "))
	}
	e.Hint = "choose with " + strings.Join(hints, " and ")
	return nil, e
}

// describe says what a choice asked for: "c-000003 of connector redis in run 2".
func describe(ch Choice) string {
	var parts []string
	if ch.ID != "" {
		parts = append(parts, ch.ID)
	}
	if ch.Connector != "" {
		parts = append(parts, "of connector "+ch.Connector)
	}
	if ch.Run != "" {
		parts = append(parts, "in run "+ch.Run)
	}
	return strings.Join(parts, " ")
}

// severalRuns says whether a connector has conversations in more than one run.
func severalRuns(convs []*Conversation) bool {
	first := map[string]string{} // connector → the run of its first conversation
	for _, c := range convs {
		if r, ok := first[c.Connector]; !ok {
			first[c.Connector] = c.Run
		} else if r != c.Run {
			return true
		}
	}
	return false
}

// example is the arguments that choose the first candidate.
func example(cands []*Conversation) string {
	c := cands[0]
	s := c.ID
	if len(names(cands, func(c *Conversation) string { return c.Connector })) > 1 {
		s += " --connector " + c.Connector
	}
	for _, o := range cands {
		if o.Connector == c.Connector && o.ID == c.ID && o.Run != c.Run {
			return s + " --run " + c.Run
		}
	}
	return s
}

func connectorHint(convs []*Conversation) string {
	cs := names(convs, func(c *Conversation) string { return c.Connector })
	if len(cs) == 0 {
		return ""
	}
	return "connectors: " + strings.Join(cs, ", ")
}

// names lists the distinct values of f over convs, sorted.
func names(convs []*Conversation, f func(*Conversation) string) []string {
	var out []string
	for _, c := range convs {
		if v := f(c); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// WriteList prints conversations as a table: the connector and the run when they tell
// conversations apart, then the id, the peer, the start, the inputs and the alerts.
func WriteList(w io.Writer, convs []*Conversation) error {
	withConnector := len(names(convs, func(c *Conversation) string { return c.Connector })) > 1
	withRun := false
	for _, c := range convs {
		withRun = withRun || c.Run != ""
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(connector, run string, rest ...string) {
		var cols []string
		if withConnector {
			cols = append(cols, connector)
		}
		if withRun {
			cols = append(cols, run)
		}
		fmt.Fprintln(tw, strings.Join(append(cols, rest...), "\t"))
	}
	row("CONNECTOR", "RUN", "CONNECTION", "PEER", "STARTED", "INPUTS", "ALERTS")
	for _, c := range convs {
		run := c.Run
		if run == "" {
			run = "-"
		}
		row(c.Connector, run, c.ID, c.Peer(), c.Start().UTC().Format(timeLayout),
			fmt.Sprint(c.count(v1alpha1.ActivityInput)), fmt.Sprint(c.count("")))
	}
	return tw.Flush()
}

// timeLayout is the activities' time in the JSON log: RFC 3339, microseconds, UTC.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"
