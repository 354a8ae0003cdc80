package vswitch

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// yamlProblem is one problem of the YAML text itself, at a YAML path.
type yamlProblem struct {
	path string // bridges[0].address; "" for the whole file
	msg  string
}

func (p yamlProblem) Error() string {
	path := p.path
	if path == "" {
		path = "the file"
	}
	return path + ": " + p.msg
}

// checkYAML walks a parsed document against the Go type it will be decoded
// into and reports what yaml.v3 would report with Go type names or stop at:
// unknown keys (with the nearest known key), keys given twice and values of
// the wrong kind, each at its YAML path. Everything is reported at once.
func checkYAML(doc *yaml.Node, t reflect.Type) []yamlProblem {
	w := &yamlWalker{budget: maxYAMLNodes}
	w.walk(doc, t, "", 0)
	return w.probs
}

// maxYAMLNodes and maxYAMLDepth bound the walk: aliases can make a small
// file a huge (or, with an alias inside its own anchor, endless) tree. The
// decoder refuses such files on its own. maxYAMLProblems bounds the report.
const (
	maxYAMLNodes    = 100000
	maxYAMLDepth    = 64
	maxYAMLProblems = 50
)

type yamlWalker struct {
	probs  []yamlProblem
	budget int
}

func (w *yamlWalker) bad(path, format string, a ...any) {
	switch {
	case len(w.probs) < maxYAMLProblems:
		w.probs = append(w.probs, yamlProblem{path: path, msg: fmt.Sprintf(format, a...)})
	case len(w.probs) == maxYAMLProblems:
		w.probs = append(w.probs, yamlProblem{msg: fmt.Sprintf("more than %d problems; fix these first", maxYAMLProblems)})
		w.budget = 0 // nothing more will be said: stop walking
	}
}

func (w *yamlWalker) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	if w.budget--; w.budget < 0 || depth > maxYAMLDepth || n == nil {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			w.walk(c, t, path, depth+1)
		}
		return
	case yaml.AliasNode:
		w.walk(n.Alias, t, path, depth+1)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves any field at its zero value
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(n, t.Elem(), path, depth)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.bad(path, "expected keys (key: value), got %s", describe(n))
			return
		}
		w.mapping(n, yamlFields(t), path, map[string]int{}, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.bad(path, "expected a list ([a, b], or one `- item` per line), got %s", describe(n))
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.bad(path, "expected %s, got %s", scalarWord(t), describe(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.bad(path, "%q is not %s", n.Value, scalarWord(t))
		}
	}
}

// mapping checks the keys of a mapping node against fields; seen holds the
// keys given so far (key -> line), to find duplicates.
func (w *yamlWalker) mapping(n *yaml.Node, fields map[string]reflect.Type, path string, seen map[string]int, depth int) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if w.budget--; w.budget < 0 {
			return
		}
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			w.merge(v, fields, path, depth+1)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.bad(path, "a key on line %d is %s; keys are names", k.Line, describe(k))
			continue
		}
		kp := joinPath(path, k.Value)
		ft, ok := fields[k.Value]
		if !ok {
			w.bad(kp, "unknown key; %s", suggest(k.Value, fields))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			w.bad(kp, "given twice (lines %d and %d); keep one", line, k.Line)
			continue
		}
		seen[k.Value] = k.Line
		w.walk(v, ft, kp, depth+1)
	}
}

// merge checks the mapping(s) a `<<` key merges in. Their keys may repeat
// the mapping's own: the mapping's win, as YAML says.
func (w *yamlWalker) merge(v *yaml.Node, fields map[string]reflect.Type, path string, depth int) {
	if w.budget--; w.budget < 0 || depth > maxYAMLDepth {
		return
	}
	switch v.Kind {
	case yaml.AliasNode:
		w.merge(v.Alias, fields, path, depth+1)
	case yaml.MappingNode:
		w.mapping(v, fields, path, map[string]int{}, depth)
	case yaml.SequenceNode:
		for _, c := range v.Content {
			w.merge(c, fields, path, depth+1)
		}
	default:
		w.bad(path, "`<<` merges a mapping or a list of mappings, got %s", describe(v))
	}
}

// yamlFields maps the YAML keys of struct type t to their field types, as
// yaml.v3 names them: the yaml tag, else the lower-cased field name;
// ",inline" structs contribute their keys; "-" and unexported fields none.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(","+opts+",", ",inline,") {
			for k, v := range yamlFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// suggest names the known key nearest to an unknown one, or lists them all.
func suggest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", len(key)/3+2 // a typo: at most a third of the key wrong (and 1 more)
	for _, k := range names {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("did you mean `%s`?", best)
	}
	return "the keys here are " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe says what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "keys (key: value)"
	case yaml.AliasNode:
		return "an alias"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	return fmt.Sprintf("the value %q", v)
}

func scalarWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.String:
		return "a single value (text)"
	}
	return "a single value"
}
