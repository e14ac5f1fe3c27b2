package kubetest

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// credentials are a kubeconfig user's: a client certificate or a bearer token.
type credentials struct {
	certData, keyData []byte
	token             string
}

// writeKubeconfig writes a single-context kubeconfig (context "kubetest")
// with the CA and credentials embedded, so it works from any folder.
func writeKubeconfig(path, server string, caPEM []byte, user string, cred credentials) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cred.certData,
		ClientKeyData:         cred.keyData,
		Token:                 cred.token,
	}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: user}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}
