package secure

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copyKeys copies the key files at from to a new folder, as an operator
// copies noise.key to each node of a cluster.
func copyKeys(t *testing.T, from string) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "noise.key")
	for _, ext := range []string{"", ".next", ".retired"} {
		b, err := os.ReadFile(from + ext)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+ext, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// adoptOK adopts the set at origin into path (through MarshalKeys, as it
// travels) and checks that path's files then load as that set.
func adoptOK(t *testing.T, path, origin string) *Keys {
	t.Helper()
	want, _, err := LoadKeys(origin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalKeys(MarshalKeys(want))
	if err != nil || !sameKeys(got, want) {
		t.Fatalf("the set does not survive its encoding: %v", err)
	}
	k, err := Adopt(path, got)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := LoadKeys(path)
	if err != nil || !sameKeys(k, want) || !sameKeys(again, want) {
		t.Fatalf("after adopting: %+v, reloaded %+v, %v", k, again, err)
	}
	if (want.Rotation == nil) != (again.Rotation == nil) ||
		(again.Rotation != nil && VerifyRotation(again.Current.Public, *again.Rotation) != nil) {
		t.Fatalf("the adopted rotation is not signed by the current key: %+v", again.Rotation)
	}
	return again
}

// TestAdoptFollowsRotations: a node with a copy of the key files adopts
// another node's rotation, retirement and next rotation, one at a time or
// all at once (it was down for two steps); a shared file (the set is
// already on disk) is only read.
func TestAdoptFollowsRotations(t *testing.T) {
	origin := filepath.Join(t.TempDir(), "noise.key")
	if _, _, err := LoadKeys(origin); err != nil {
		t.Fatal(err)
	}
	step, behind := copyKeys(t, origin), copyKeys(t, origin)
	if _, err := Rotate(origin, time.UnixMilli(time.Now().UnixMilli())); err != nil {
		t.Fatal(err)
	}
	adoptOK(t, step, origin)
	adoptOK(t, origin, origin) // a shared file: nothing to write
	if _, err := Retire(origin); err != nil {
		t.Fatal(err)
	}
	adoptOK(t, step, origin)
	if _, err := Rotate(origin, time.UnixMilli(time.Now().UnixMilli()+5)); err != nil {
		t.Fatal(err)
	}
	adoptOK(t, step, origin)
	k := adoptOK(t, behind, origin) // missed all three
	if len(k.Retired) != 1 || k.Next == nil {
		t.Fatalf("the node that was behind: %+v", k)
	}
}

// TestAdoptRefusesDivergedKeys: a node whose key is not in the set's
// history, or that is ahead of it, keeps its files.
func TestAdoptRefusesDivergedKeys(t *testing.T) {
	origin := filepath.Join(t.TempDir(), "noise.key")
	if _, _, err := LoadKeys(origin); err != nil {
		t.Fatal(err)
	}
	ahead := copyKeys(t, origin)
	if _, err := Rotate(ahead, time.Now()); err != nil {
		t.Fatal(err)
	}
	stranger := filepath.Join(t.TempDir(), "noise.key") // never copied: a key of its own
	if _, _, err := LoadKeys(stranger); err != nil {
		t.Fatal(err)
	}
	want, _, _ := LoadKeys(origin)
	for name, path := range map[string]string{"ahead": ahead, "stranger": stranger} {
		before, _, _ := LoadKeys(path)
		if _, err := Adopt(path, want); !errors.Is(err, ErrKeysDiverged) {
			t.Fatalf("%s: %v", name, err)
		}
		after, _, _ := LoadKeys(path)
		if !sameKeys(before, after) {
			t.Fatalf("%s: the refused adoption changed the files", name)
		}
	}
	// A rotation elsewhere does not overwrite a different one here.
	if _, err := Rotate(origin, time.Now()); err != nil {
		t.Fatal(err)
	}
	want, _, _ = LoadKeys(origin)
	if _, err := Adopt(ahead, want); !errors.Is(err, ErrKeysDiverged) {
		t.Fatalf("two rotations from one key: %v", err)
	}
	if _, err := UnmarshalKeys(MarshalKeys(want)[:40]); err == nil {
		t.Fatal("a truncated set decoded")
	}
}
