//! One TiKV client per store address, reconnected after a failure.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tonic::codec::CompressionEncoding;

use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::transport::{self, Channel};
use crate::{Config, Result};

/// The per-store clients of one TiKV client.
pub(crate) struct Stores {
    config: Config,
    clients: Mutex<HashMap<String, TikvClient<Channel>>>,
}

impl Stores {
    pub(crate) fn new(config: Config) -> Self {
        Stores {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `address`, connecting on first use.
    pub(crate) async fn client(&self, address: &str) -> Result<TikvClient<Channel>> {
        if let Some(client) = self.lock().get(address) {
            return Ok(client.clone());
        }
        let channel = transport::connect(address, &self.config).await?;
        let mut client = TikvClient::new(channel)
            .max_decoding_message_size(self.config.max_decoding_message_size)
            .max_encoding_message_size(self.config.max_encoding_message_size)
            .accept_compressed(CompressionEncoding::Gzip);
        if self.config.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        self.lock().insert(address.to_owned(), client.clone());
        Ok(client)
    }

    /// Drops the client for `address`, so the next request reconnects.
    pub(crate) fn forget(&self, address: &str) {
        self.lock().remove(address);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TikvClient<Channel>>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
