// An upstream on Node.js with Express 4: routes are case-insensitive and take an optional
// trailing slash by default; parameters are decoded.
'use strict';
const express = require('express');

const app = express();
app.all(['/secure', '/secure/*'], (req, res) => res.type('text').send(`PROTECTED ${req.path}`));
app.all('/_debug', (req, res) => res.type('text').send('DEBUG'));
app.all('/items/:id', (req, res) => {
  if (req.params.id === '_debug') return res.type('text').send('DEBUG');
  res.type('text').send(`PUBLIC ${req.path}`);
});
app.all('*', (req, res) => {
  const host = (req.hostname || '').toLowerCase().replace(/\.$/, '');
  if (host === 'internal.test') return res.type('text').send('INTERNAL');
  res.type('text').send(`PUBLIC ${req.path}`);
});
app.listen(Number(process.argv[2]), '127.0.0.1');
