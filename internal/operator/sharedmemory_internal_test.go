package operator

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// Without a store there is nothing to be invalid: the gauge says valid, so that the chart's
// ParleySharedMemoryFilesInvalid never fires where no store is set (the chart's default).
func TestNoSharedMemoryStoreIsValid(t *testing.T) {
	sharedMemoryFilesValid.Set(0)
	w, err := NewSharedMemoryWatch(Options{})
	if err != nil || w != nil {
		t.Fatalf("watch %v, error %v: want none without a store", w, err)
	}
	var m dto.Metric
	if err := sharedMemoryFilesValid.Write(&m); err != nil {
		t.Fatal(err)
	}
	if v := m.GetGauge().GetValue(); v != 1 {
		t.Fatalf("parley_operator_shared_memory_files_valid %v without a store, want 1", v)
	}
}
