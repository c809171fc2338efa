"""manifold_ae: autoencoders as orthogonal projections onto the manifold of normal data.

Exact toy manifolds and certified projections (``manifolds``, ``projection``), closed-form optimal
autoencoders (``theory``), objectives and models shared by vectors and images (``objectives``, ``models``,
``corruptions``), the verification suite (``claims``), anomaly scores and metrics (``anomaly``), image data
and training (``data``, ``train``), and teaching figures and widgets (``viz``).

Importing the package runs nothing and imports only torch lazily via submodules.
"""
__version__ = "0.1.0"
