//! One method per account-API endpoint the tests call, so a test reads as what it does.

use http::Method;
use serde_json::json;

use super::{Resp, TestServer};

impl TestServer {
    /// `POST {mount}/refresh` with `refresh_token` in the body.
    pub async fn refresh(&self, refresh_token: &str) -> Resp {
        self.post(&self.auth_path("/refresh"))
            .json(json!({"refresh_token": refresh_token}))
            .send()
            .await
    }

    /// `POST {mount}/logout` as the holder of `access`.
    pub async fn logout(&self, access: &str) -> Resp {
        self.post(&self.auth_path("/logout"))
            .bearer(access)
            .send()
            .await
    }

    /// `GET {mount}/me` as the holder of `access`.
    pub async fn me(&self, access: &str) -> Resp {
        self.get(&self.auth_path("/me")).bearer(access).send().await
    }

    /// `GET {mount}/api-keys` as the holder of `access`.
    pub async fn list_keys(&self, access: &str) -> Resp {
        self.get(&self.auth_path("/api-keys"))
            .bearer(access)
            .send()
            .await
    }

    /// `DELETE {mount}/api-keys/{key_id}` as the holder of `access`.
    pub async fn revoke_key(&self, access: &str, key_id: &str) -> Resp {
        self.req(
            Method::DELETE,
            &self.auth_path(&format!("/api-keys/{key_id}")),
        )
        .bearer(access)
        .send()
        .await
    }

    /// `PUT {mount}/admin/users/{user_id}/{action}` (`disable`, `enable`, `role?role=…`) as
    /// the admin holding `access`.
    pub async fn admin_user(&self, access: &str, user_id: &str, action: &str) -> Resp {
        self.req(
            Method::PUT,
            &self.auth_path(&format!("/admin/users/{user_id}/{action}")),
        )
        .bearer(access)
        .send()
        .await
    }

    /// The status of `GET path` with `credential` as a bearer token.
    pub async fn status_with(&self, path: &str, credential: &str) -> u16 {
        self.get(path).bearer(credential).send().await.status
    }

    /// The id of the user with `email`, from the store.
    pub async fn user_id(&self, email: &str) -> String {
        self.state
            .store
            .user_by_email(email)
            .await
            .unwrap()
            .unwrap()
            .user_id
    }
}
