// A shop page's tracking as Snowplow's docs set it up: @snowplow/browser-tracker with the
// e-commerce plugin, sending to the collector given in the page's query (`?collector=<url>`).
// Bundled at test time with esbuild (tests/integration/test_collect_browser.py); the test reads
// `window.tracking` for what the tracker's own callbacks reported.
import { getDomainSessionId, newTracker, trackPageView } from '@snowplow/browser-tracker';
import {
  SnowplowEcommercePlugin,
  trackAddToCart,
  trackProductView,
  trackRemoveFromCart,
  trackTransaction,
} from '@snowplow/browser-plugin-snowplow-ecommerce';

const query = new URLSearchParams(window.location.search);
const tracking = { sent: 0, failures: [], sessionId: null };
window.tracking = tracking;

newTracker('sp', query.get('collector'), {
  appId: 'shop',
  plugins: [SnowplowEcommercePlugin()],
  eventMethod: query.get('method') || 'post',
  bufferSize: 1,
  onRequestSuccess: (events) => {
    tracking.sent += events.length;
  },
  onRequestFailure: (failure) => {
    tracking.failures.push({ status: failure.status, message: failure.message, willRetry: failure.willRetry });
  },
});
tracking.sessionId = getDomainSessionId();

const shoe = { id: 'SKU-1', name: 'Shoe', category: 'shoes', price: 40, currency: 'EUR' };
const sock = { id: 'SKU-2', name: 'Sock', category: 'socks', price: 5, currency: 'EUR', quantity: 2 };
if (query.get('bad')) {
  trackAddToCart({ products: [], total_value: 0, currency: 'EUR' }); // no product: refused
} else {
  trackPageView();
  trackProductView(shoe);
  trackAddToCart({ products: [shoe], total_value: 40, currency: 'EUR' });
  trackAddToCart({ products: [sock], total_value: 50, currency: 'EUR' });
  trackRemoveFromCart({ products: [sock], total_value: 40, currency: 'EUR' });
  trackTransaction({ transaction_id: 'T-1', revenue: 40, currency: 'EUR', payment_method: 'card', products: [shoe] });
}
