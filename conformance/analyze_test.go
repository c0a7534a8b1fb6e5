package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"istio.io/istio/pkg/config/analysis/analyzers"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/analysis/local"
)

// analyze runs istioctl analyze's own analyzers offline, as `istioctl analyze
// -A FILES...` does: the defaults Istio would provide, then the files.
func analyze(t *testing.T, manifests []string) diag.Messages {
	fs, err := files(manifests)
	if err != nil {
		t.Fatal(err)
	}
	sa := local.NewSourceAnalyzer(analyzers.AllCombined(), "", "istio-system", nil)
	if err := sa.AddDefaultResources(); err != nil {
		t.Fatal(err)
	}
	var readers []local.ReaderSource
	for _, f := range fs {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		readers = append(readers, local.ReaderSource{Name: f, Reader: r})
	}
	if err := sa.AddReaderKubeSource(readers); err != nil {
		t.Fatalf("istioctl analyze cannot read the manifests: %v", err)
	}
	res, err := sa.Analyze(make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	return res.Messages
}

// TestAnalyzeShippedStages: istioctl analyze finds nothing in any stage.
func TestAnalyzeShippedStages(t *testing.T) {
	stages, err := filepath.Glob("../istio/stages/*")
	if err != nil || len(stages) < 6 {
		t.Fatalf("stages: %v %v", stages, err)
	}
	for _, stage := range stages {
		for _, m := range analyze(t, []string{"../k8s", "../istio/base", stage}) {
			t.Errorf("%s: %s", filepath.Base(stage), m.String())
		}
	}
}

// Finding is one istioctl analyze message, as the Rust side compares it.
type Finding struct {
	Code     string `json:"code"`
	Level    string `json:"level"`
	Resource string `json:"resource"`
	Text     string `json:"text"`
}

// TestAnalyzeJob writes istioctl analyze's findings for the job in
// WEATHER_ANALYZE_JOB (a JSON Job) to its `out`; without one it checks that a
// subset no DestinationRule defines is found (IST0101), so that the analyzers
// are known to run.
func TestAnalyzeJob(t *testing.T) {
	job, given := readJob(t, "WEATHER_ANALYZE_JOB")
	if !given {
		dir := t.TempDir()
		broken := filepath.Join(dir, "forecast.yaml")
		text, err := os.ReadFile("../istio/stages/multiservice/forecast.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(broken, []byte(strings.Replace(string(text), "subset: v2", "subset: v9", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		job.Manifests = []string{"../k8s", "../istio/base", "../istio/stages/multiservice/frontend.yaml", "../istio/stages/multiservice/recommendation.yaml", broken}
	}
	var out []Finding
	for _, m := range analyze(t, job.Manifests) {
		res := ""
		if m.Resource != nil {
			res = m.Resource.Metadata.FullName.String()
		}
		out = append(out, Finding{Code: m.Type.Code(), Level: m.Type.Level().String(), Resource: res, Text: m.String()})
	}
	if !given {
		found := false
		for _, f := range out {
			found = found || (f.Code == "IST0101" && f.Resource == "weather/forecast-route")
		}
		if !found {
			t.Errorf("istioctl analyze missed the undefined subset: %+v", out)
		}
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(job.Out, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
