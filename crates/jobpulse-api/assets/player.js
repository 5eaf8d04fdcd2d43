// Inline playback of READY videos: native HLS where the browser has it, otherwise hls.js
// (vendored, loaded on first use only, so browsers with native HLS never download it).

import { h } from './workbox.js';
import { safeUrl } from './format.js';

const HLS_SCRIPT = '/assets/vendor/hls.light.min.js';
let hlsLoading = null;

function loadHls() {
  if (window.Hls) return Promise.resolve(window.Hls);
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve, reject) => {
      const s = document.createElement('script');
      s.src = HLS_SCRIPT;
      s.async = true;
      s.addEventListener('load', () => (window.Hls ? resolve(window.Hls) : reject(new Error('hls.js did not load'))));
      s.addEventListener('error', () => {
        hlsLoading = null;
        reject(new Error('hls.js could not be loaded'));
      });
      document.head.append(s);
    });
  }
  return hlsLoading;
}

/**
 * Builds a `<video>` for `hlsUrl` in `container` (replacing what was there) and starts playing.
 * Resolves to the element; playback errors are shown next to it.
 */
export async function play(container, hlsUrl, posterUrl, label) {
  const src = safeUrl(hlsUrl, location.href);
  const message = h('p', { class: 'player-error', 'data-testid': 'player-error', role: 'alert', hidden: true });
  const showError = (text) => {
    message.hidden = false;
    message.textContent = text;
  };
  if (!src) {
    container.replaceChildren(message);
    showError('This video has no playable address.');
    return null;
  }
  const video = h('video', {
    controls: true, playsinline: true, preload: 'auto', 'data-testid': 'video-player',
    'aria-label': `Video: ${label}`,
  });
  const poster = safeUrl(posterUrl, location.href);
  if (poster) video.poster = poster;
  video.addEventListener('error', () => {
    const code = video.error ? video.error.code : 0;
    showError(`The video cannot be played (media error ${code}).`);
  });
  container.replaceChildren(video, message);

  if (video.canPlayType('application/vnd.apple.mpegurl')) {
    video.dataset.player = 'native';
    video.src = src;
  } else {
    video.dataset.player = 'hls.js';
    let Hls;
    try {
      Hls = await loadHls();
    } catch (e) {
      showError(`The HLS player could not be loaded: ${e.message}`);
      return video;
    }
    if (!Hls.isSupported()) {
      showError('This browser cannot play HLS video.');
      return video;
    }
    const hls = new Hls({ enableWorker: true });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data && data.fatal) {
        showError(`The video cannot be played (${data.type}: ${data.details}).`);
        hls.destroy();
      }
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    // Tear the player down when the row's player area is emptied (status change, delete).
    new MutationObserver((_m, obs) => {
      if (!video.isConnected) {
        hls.destroy();
        obs.disconnect();
      }
    }).observe(container, { childList: true });
  }
  video.play().catch((e) => {
    // Autoplay rules may refuse without a gesture; the controls are there.
    if (e && e.name !== 'AbortError' && e.name !== 'NotAllowedError') showError(`Playback failed: ${e.message}`);
  });
  return video;
}
