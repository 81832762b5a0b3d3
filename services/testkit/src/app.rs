//! The whole application on 127.0.0.1:0 against a fresh database, with a
//! registered tenant and helpers to mint tokens and call the API.

use std::net::TcpListener;

use opsledger_api::auth::AuthConfig;
use opsledger_domain::access::Role;
use opsledger_server::{Application, Config};
use uuid::Uuid;

use crate::pg::{fresh_database, TestDatabase};

pub struct TestApp {
    pub address: String,
    pub db: TestDatabase,
    pub config: Config,
    pub auth: AuthConfig,
    pub http: reqwest::Client,
    /// A tenant registered at start.
    pub tenant: Uuid,
    pub app_state: actix_web::web::Data<opsledger_api::AppState>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with a configuration adjusted for a test (short worker intervals, say).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = fresh_database().await;
    let mut config = Config::for_database(&db.url);
    config.http_workers = 1;
    adjust(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
    let app = Application::build_on(&config, listener)
        .await
        .expect("the application starts");
    let port = app.port();
    let app_state = app.state.clone();
    tokio::spawn(app.run_until_stopped());
    let tenant = Uuid::now_v7();
    opsledger_server::commands::register_tenant(&app_state.pool, tenant, "Test tenant", "testkit")
        .await
        .expect("the test tenant registers");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        auth: config.auth(),
        db,
        config,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        tenant,
        app_state,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A valid token for this app's tenant.
    pub fn token(&self, roles: &[Role]) -> String {
        self.auth.mint(self.tenant, "tester", roles, None, 600)
    }

    pub fn token_for(
        &self,
        tenant: Uuid,
        subject: &str,
        roles: &[Role],
        client_id: Option<Uuid>,
    ) -> String {
        self.auth.mint(tenant, subject, roles, client_id, 600)
    }

    pub async fn register_tenant(&self, name: &str) -> Uuid {
        let id = Uuid::now_v7();
        opsledger_server::commands::register_tenant(&self.app_state.pool, id, name, "testkit")
            .await
            .unwrap();
        id
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("the request is sent")
    }
}
