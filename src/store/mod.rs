//! One TiKV client per store address, reconnected after a failure, and (where the transport
//! can stream requests, when configured) one BatchCommands stream per store.

mod batch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::codec::CompressionEncoding;

use crate::proto::tikvpb::tikv_client::TikvClient;
use crate::transport::{self, Channel};
use crate::{Config, Result};

/// The per-store clients of one TiKV client.
pub(crate) struct Stores {
    config: Config,
    /// Per address, the client and its generation (how many connections were made before).
    clients: Mutex<HashMap<String, (u64, TikvClient<Channel>)>>,
    generations: Mutex<HashMap<String, u64>>,
    batches: Mutex<HashMap<String, Arc<batch::BatchStream>>>,
    /// Per address, held while a stream opens, so that concurrent first requests share one
    /// and a slow store does not hold back the others.
    opening: Gates,
    /// Per address, held while a connection opens: concurrent requests that find no client
    /// share one connection attempt instead of each dialing.
    connecting: Gates,
}

/// Per-address async locks.
#[derive(Default)]
struct Gates(Mutex<HashMap<String, Arc<futures::lock::Mutex<()>>>>);

impl Gates {
    fn get(&self, address: &str) -> Arc<futures::lock::Mutex<()>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(address.to_owned())
            .or_default()
            .clone()
    }
}

impl Stores {
    pub(crate) fn new(config: Config) -> Self {
        Stores {
            config,
            clients: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            batches: Mutex::new(HashMap::new()),
            opening: Gates::default(),
            connecting: Gates::default(),
        }
    }

    /// The generation of the connection requests to `address` go over now: pass it to
    /// [`Stores::forget`] after a failure, so that many failures of one connection make one
    /// reconnection.
    pub(crate) fn generation(&self, address: &str) -> u64 {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .copied()
            .unwrap_or(0)
    }

    /// Whether requests to `address` may go over BatchCommands (not when the store refused
    /// the stream with Unimplemented).
    pub(crate) fn batches_to(&self, address: &str) -> bool {
        !self
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .is_some_and(|b| b.is_unsupported())
    }

    /// Sends `cmd` over the store's BatchCommands stream, opening one when there is none or
    /// the last one broke.
    pub(crate) async fn call_batched(
        &self,
        address: &str,
        cmd: crate::proto::tikvpb::batch_commands_request::request::Cmd,
    ) -> Result<crate::proto::tikvpb::batch_commands_response::response::Cmd> {
        let stream = match self.open_batch(address) {
            Some(stream) => stream,
            // The rare path is boxed, so that every call does not carry its state.
            None => Box::pin(self.start_batch(address)).await?,
        };
        stream.call(cmd).await
    }

    /// The open batch stream to `address`, if any.
    fn open_batch(&self, address: &str) -> Option<Arc<batch::BatchStream>> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(address)
            .filter(|b| !b.is_closed())
            .cloned()
    }

    /// Opens a batch stream to `address`, or joins the one a concurrent caller opened.
    async fn start_batch(&self, address: &str) -> Result<Arc<batch::BatchStream>> {
        let gate = self.opening.get(address);
        let _opening = gate.lock().await;
        if let Some(stream) = self.open_batch(address) {
            return Ok(stream);
        }
        let client = self.client(address).await?;
        let stream = Arc::new(batch::BatchStream::open(client, address));
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(address.to_owned(), stream.clone());
        Ok(stream)
    }

    /// The client for `address`, connecting on first use (one connection attempt at a time
    /// per address).
    pub(crate) async fn client(&self, address: &str) -> Result<TikvClient<Channel>> {
        if let Some((_, client)) = self.lock().get(address) {
            return Ok(client.clone());
        }
        Box::pin(self.connect(address)).await
    }

    /// Connects to `address`, or takes the client a concurrent caller connected.
    async fn connect(&self, address: &str) -> Result<TikvClient<Channel>> {
        let gate = self.connecting.get(address);
        let _connecting = gate.lock().await;
        if let Some((_, client)) = self.lock().get(address) {
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
        let generation = self.generation(address);
        self.lock()
            .insert(address.to_owned(), (generation, client.clone()));
        Ok(client)
    }

    /// Drops the client for `address` if it is still the one of `generation`, so the next
    /// request reconnects. Its batch stream stays until it ends (then the next batched
    /// request replaces it): one slow or lost answer does not end a healthy stream, and a dead
    /// connection ends it by itself.
    pub(crate) fn forget(&self, address: &str, generation: u64) {
        let mut clients = self.lock();
        if clients.get(address).is_some_and(|(g, _)| *g == generation) {
            clients.remove(address);
            *self
                .generations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(address.to_owned())
                .or_default() += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, TikvClient<Channel>)>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
