// Package catest helps test code that keeps the CA in a Secret: a fake
// clientset whose Secrets have resourceVersions checked like the API
// server's, so that compare-and-swap updates can lose.
package catest

import (
	"fmt"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// NewClientset returns a fake clientset in which every write of a Secret
// gets a new resourceVersion and an update carrying another one than the
// stored Secret's fails with Conflict, as kube-apiserver does. (The plain
// fake clientset neither sets nor checks resourceVersions.)
func NewClientset(objects ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objects...)
	tracker := c.Tracker()
	var mu sync.Mutex
	version := 100
	next := func() string {
		version++
		return strconv.Itoa(version)
	}
	gvr := corev1.SchemeGroupVersion.WithResource("secrets")
	c.PrependReactor("*", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		switch action.GetVerb() {
		case "create":
			a := action.(k8stesting.CreateAction)
			sec := a.GetObject().(*corev1.Secret).DeepCopy()
			sec.ResourceVersion = next()
			if err := tracker.Create(gvr, sec, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, sec, nil
		case "update":
			a := action.(k8stesting.UpdateAction)
			sec := a.GetObject().(*corev1.Secret).DeepCopy()
			cur, err := tracker.Get(gvr, a.GetNamespace(), sec.Name)
			if err != nil {
				return true, nil, err
			}
			if rv := cur.(*corev1.Secret).ResourceVersion; sec.ResourceVersion != rv {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), sec.Name,
					fmt.Errorf("the object has been modified (resourceVersion %s, stored %s)", sec.ResourceVersion, rv))
			}
			sec.ResourceVersion = next()
			if err := tracker.Update(gvr, sec, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, sec, nil
		case "patch":
			a := action.(k8stesting.PatchAction)
			handled, obj, err := k8stesting.ObjectReaction(tracker)(action)
			if err != nil || !handled {
				return handled, obj, err
			}
			sec := obj.(*corev1.Secret).DeepCopy()
			sec.ResourceVersion = next()
			if err := tracker.Update(gvr, sec, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, sec, nil
		}
		return false, nil, nil
	})
	return c
}
