// The console's map page (crates/console/src/map.rs): incidents as circle markers coloured by
// status, over the district's grid boundaries, refreshed on every commit the console's live
// feed (/api/events) announces. Everything comes from the map div's data- attributes; text is
// put into the page with textContent only, never as HTML.
(function () {
  'use strict';
  var el = document.getElementById('map');
  if (!el || typeof L === 'undefined') {
    return;
  }
  function parse(name, fallback) {
    var text = el.getAttribute(name);
    if (!text) {
      return fallback;
    }
    try {
      return JSON.parse(text);
    } catch (e) {
      return fallback;
    }
  }
  var colours = parse('data-colours', {});
  var grids = parse('data-grids', null);
  var tiles = el.getAttribute('data-tiles');

  var map = L.map(el, { preferCanvas: false, attributionControl: !!tiles });
  if (tiles) {
    L.tileLayer(tiles, {
      maxZoom: 19,
      attribution: el.getAttribute('data-attribution') || ''
    }).addTo(map);
  }

  var gridLayer = null;
  if (grids && grids.type === 'FeatureCollection') {
    gridLayer = L.geoJSON(grids, {
      style: function () {
        return { color: '#364fc7', weight: 2, fill: true, fillOpacity: 0.05 };
      },
      onEachFeature: function (feature, layer) {
        var p = feature.properties || {};
        var label = document.createElement('span');
        label.textContent = p.name || p.grid || '';
        if (p.grid && p.name) {
          label.title = p.grid;
        }
        layer.bindTooltip(label, {
          permanent: true,
          direction: 'center',
          className: 'map-grid-label'
        });
      }
    }).addTo(map);
  }

  function row(dl, term, value, cls) {
    var dt = document.createElement('dt');
    dt.textContent = term;
    var dd = document.createElement('dd');
    dd.textContent = value;
    if (cls) {
      dd.className = cls;
    }
    dl.appendChild(dt);
    dl.appendChild(dd);
  }

  function popup(p) {
    var box = document.createElement('div');
    box.className = 'map-popup';
    var a = document.createElement('a');
    a.href = '/incident/' + encodeURIComponent(p.id);
    a.textContent = String(p.id).slice(-8);
    box.appendChild(a);
    var dl = document.createElement('dl');
    row(dl, 'category', p.category || '-');
    row(dl, 'status', p.status + (p.overdue ? ' (overdue)' : ''), p.overdue ? 'map-overdue' : null);
    row(dl, 'severity', p.severity || '-');
    row(dl, 'level', p.level);
    row(dl, 'grid', p.grid || '-');
    box.appendChild(dl);
    return box;
  }

  var markers = L.featureGroup().addTo(map);
  var fitted = false;

  function fit() {
    if (gridLayer && gridLayer.getLayers().length > 0) {
      map.fitBounds(gridLayer.getBounds(), { padding: [20, 20] });
    } else if (markers.getLayers().length > 0) {
      map.fitBounds(markers.getBounds(), { padding: [40, 40], maxZoom: 17 });
    } else {
      map.setView([0, 0], 2);
      return false;
    }
    return true;
  }

  function draw(collection) {
    markers.clearLayers();
    (collection.features || []).forEach(function (f) {
      if (!f.geometry || f.geometry.type !== 'Point') {
        return;
      }
      var c = f.geometry.coordinates;
      var p = f.properties || {};
      var colour = colours[p.status] || '#000000';
      L.circleMarker([c[1], c[0]], {
        radius: p.overdue ? 10 : 8,
        color: p.overdue ? '#c92a2a' : '#212529',
        weight: p.overdue ? 3 : 1,
        fillColor: colour,
        fillOpacity: 0.9
      }).bindPopup(popup(p)).addTo(markers);
    });
    if (!fitted) {
      fitted = fit();
    }
  }

  var loading = false;
  var again = false;
  function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    fetch(el.getAttribute('data-geojson'), { credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) {
          throw new Error('map data: HTTP ' + r.status);
        }
        return r.json();
      })
      .then(draw)
      .catch(function (e) {
        el.setAttribute('data-error', String(e));
      })
      .then(function () {
        loading = false;
        if (again) {
          again = false;
          load();
        }
      });
  }

  fit();
  load();
  if (typeof EventSource !== 'undefined') {
    var events = new EventSource(el.getAttribute('data-events'));
    events.addEventListener('commit', load);
  }
})();
