package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/parley-dev/parley/api/v1alpha1"
)

// A store turned off leaves connectors' Secrets with no shared-memory key; the others stay.
func TestSyncSharedMemoryRemovesWhatIsNoLongerWanted(t *testing.T) {
	s := &corev1.Secret{Data: map[string][]byte{
		v1alpha1.TokenKey:                []byte("t"),
		v1alpha1.SharedMemoryURLKey:      []byte("redis://a:6379"),
		v1alpha1.SharedMemoryPasswordKey: []byte("p"),
	}}
	if !syncSharedMemory(s, SharedMemory{}.secretData()) {
		t.Fatal("no change reported")
	}
	if len(s.Data) != 1 || string(s.Data[v1alpha1.TokenKey]) != "t" {
		t.Errorf("data %v: want the token only", s.Data)
	}
	want := SharedMemory{URL: "redis://b:6379", CA: []byte("ca")}.secretData()
	if !syncSharedMemory(s, want) || string(s.Data[v1alpha1.SharedMemoryURLKey]) != "redis://b:6379" ||
		string(s.Data[v1alpha1.SharedMemoryCAKey]) != "ca" || s.Data[v1alpha1.SharedMemoryPasswordKey] != nil {
		t.Errorf("data %v", s.Data)
	}
	if syncSharedMemory(s, want) {
		t.Error("a change reported where there was none")
	}
}
