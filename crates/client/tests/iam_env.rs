//! IAM with the credentials and region of the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Alone in its test binary: it sets variables, which no
//! other thread may read meanwhile.

mod support;

use futures_util::StreamExt;
use herald_client::{Auth, Client};
use serde_json::json;

use support::{WAIT, start};

const REGION: &str = "ap-southeast-2";
const ACCESS_KEY: &str = "AKIAFROMENVIRONMENT";
const SECRET_KEY: &str = "from/the+environment";

#[test]
fn iam_credentials_and_region_from_the_environment() {
    // SAFETY: set before the runtime and any other thread of this process start.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::set_var("AWS_REGION", REGION);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let modes = r#"["AWS_IAM"]"#;
        let server = start(&format!(
            "[auth]\nconnection_auth_modes = {modes}\ndefault_publish_auth_modes = {modes}\n\
             default_subscribe_auth_modes = {modes}\n\
             [[auth.providers]]\nauth_type = \"AWS_IAM\"\nregion = \"{REGION}\"\n\
             [[auth.providers.keys]]\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{SECRET_KEY}\"\nprincipal = \"env\"\n\
             actions = [\"EventConnect\", \"EventPublish\", \"EventSubscribe\"]\n\
             [[namespaces]]\nname = \"default\"\n"
        ))
        .await;
        let client = Client::new(&server.endpoint(), Auth::iam_from_env().unwrap()).unwrap();
        let connection = client.connect().await.unwrap();
        let mut sub = connection.subscribe("/default/env").await.unwrap();
        connection
            .publish("/default/env", &[json!("socket")])
            .await
            .unwrap();
        client
            .publish("/default/env", &[json!("http")])
            .await
            .unwrap();
        for expected in ["\"socket\"", "\"http\""] {
            let event = tokio::time::timeout(WAIT, sub.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            assert_eq!(event.data, expected);
        }
        connection.close();
        server.stop().await;
    });
}
